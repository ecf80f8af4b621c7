# Two commands for a newcomer: `make run` (set up + start the app) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench experiment

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

# extra Streamlit flags: make run ARGS="--server.address 0.0.0.0" (see README)
# models of your own (see README): make run MODELS=models.toml (sets LRP_MODELS)
run: $(STAMP)
	$(if $(MODELS),LRP_MODELS=$(MODELS) ,)$(PY) -m streamlit run lrp_explorer/app.py $(ARGS)

# pytest exits 5 when it collects no test: that is reported, not treated as a failure
test: lint
	$(PY) -m pytest -q -ra || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest: no tests collected"; [ $$rc -eq 5 ]; }

# ruff, then mypy on the engine (both configured in pyproject.toml)
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) benchmarks/bench_explain.py
	$(PY) benchmarks/bench_blrp.py
	$(PY) benchmarks/bench_pixel_flipping.py
	$(PY) benchmarks/bench_models.py

# the B-LRP pixel-flipping experiment on the 1 000 held-out digits (README table)
experiment: $(STAMP)
	$(PY) -m lrp_engine experiment pixel-flipping
