# Two entry points for a new user (see README.md):
#   make demo   venv + install + Fashion-MNIST + a short real softmax and PCL training + FGSM/PGD table
#   make test   venv + install + the test suite (what .ci/run runs)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: demo test test-fast install data bench clean-demo

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip setuptools wheel
	$(BIN)/pip install -q -e '.[test,plots]'
	touch $@

install: $(BIN)/.installed

data: install
	$(BIN)/pcl-data --dataset=fashion_mnist --install

demo: data
	$(BIN)/pcl-train --config=configs/fmnist_cnn6.py:quick,softmax --workdir=$(DEMO_DIR)/softmax --verbose=2
	$(BIN)/pcl-train --config=configs/fmnist_cnn6.py:quick --workdir=$(DEMO_DIR)/pcl --verbose=2
	$(BIN)/pcl-attack --workdir=$(DEMO_DIR)/softmax,$(DEMO_DIR)/pcl --method=fgsm,pgd \
		--num_examples=1000 --output=$(DEMO_DIR)/report

test: install
	$(BIN)/python -m pytest -q --durations=15 tests

# The inner-loop tier: everything but the tests marked slow in tests/conftest.py.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: data
	$(BIN)/python bench/train_throughput.py

clean-demo:
	rm -rf $(DEMO_DIR)
