# Everything a fresh machine needs: `make demo` trains, `make test` tests. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CIFAR-10 (JPEG copy) archives; override with `make demo RIR_KERAS_DATA=/path/to/folder`.
RIR_KERAS_DATA ?= $(abspath ../shared/datasets/cifar10)
export RIR_KERAS_DATA

.PHONY: demo test bench install clean

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# The main job: train RiR-32 on CIFAR-10 (JPEG copy) for a short budget, offline, then evaluate it.
demo: install
	$(BIN)/rir-keras train --model rir32 --dataset $(RIR_KERAS_DATA)/cifar10-jpeg.tar.gz \
		--epochs 1 --steps-per-epoch 60 --batch-size 128 --output runs/demo --overwrite

test: install
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python -m pip install --quiet ".[bench]"
	$(BIN)/python benchmarks/run.py --output docs/benchmarks.md

clean:
	rm -rf $(VENV) runs
