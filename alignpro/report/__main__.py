from alignpro.report.cli import cli

cli()
