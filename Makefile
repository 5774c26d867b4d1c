# `make demo` and `make test` set up .venv from requirements.txt on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -q -n 2 --dist loadgroup --durations=15

.PHONY: demo test test-slow test-all setup fashion-mnist feature-net
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

# Test-only reference implementations (torch CPU, pytorch-fid), on top of the project's.
$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(VENV)/bin/pip install --quiet -r requirements-test.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) main.py --config configs/toy/vp_gmm.py --workdir runs/demo --mode train_eval

test: $(VENV)/.installed-test
	$(PYTEST) -m "not slow"

test-slow: $(VENV)/.installed-test
	$(PYTEST) -m slow

test-all: $(VENV)/.installed-test
	$(PYTEST)

# Real Fashion-MNIST for TFDS, offline, from the Debian package (needs root for apt-get).
fashion-mnist: $(VENV)/.installed
	test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || apt-get install -y dataset-fashion-mnist
	$(PY) -m datasets prepare_fashion_mnist --data_dir=data/tfds

# The Fashion-MNIST feature network for FID / KID / precision-recall (a few minutes).
feature-net: fashion-mnist
	$(PY) -m feature_nets train --dataset fashion_mnist --data_dir data/tfds
