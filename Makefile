# `make demo` and `make test` set up .venv from requirements.txt on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -q -n 2 --dist loadgroup --durations=15

.PHONY: demo test test-slow test-all setup fashion-mnist
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) main.py --config configs/toy/vp_gmm.py --workdir runs/demo --mode train_eval

test: $(VENV)/.installed
	$(PYTEST) -m "not slow"

test-slow: $(VENV)/.installed
	$(PYTEST) -m slow

test-all: $(VENV)/.installed
	$(PYTEST)

# Real Fashion-MNIST for TFDS, offline, from the Debian package (needs root for apt-get).
fashion-mnist: $(VENV)/.installed
	test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || apt-get install -y dataset-fashion-mnist
	$(PY) -m datasets prepare_fashion_mnist --data_dir=data/tfds
