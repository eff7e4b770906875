"""Side tools over the pipeline: the job plan of a sweep (``plan``), the prompt-lever probe (``lever``) and the
theory lab (``theory``)."""
