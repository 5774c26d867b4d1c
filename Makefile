# `make demo` and `make test` set up .venv from requirements.txt on first use.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all setup
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) main.py --config configs/toy/vp_gmm.py --workdir runs/demo --mode train_eval

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "not slow"

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -n 2
