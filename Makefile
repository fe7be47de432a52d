# Everything a fresh machine needs: `make demo` trains, `make test` tests. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CIFAR-10 (JPEG copy) archives; override with `make demo RIR_KERAS_DATA=/path/to/folder`.
RIR_KERAS_DATA ?= $(abspath ../shared/datasets/cifar10)
export RIR_KERAS_DATA

.PHONY: demo test bench install clean campaign campaign-commit status gpu-prepare gpu-dry-run

# The training campaign (docs/results.md): Table 1's four 32-layer models on all of CIFAR-10 (JPEG
# copy) with the `fast` recipe, RiR-32 and ResNet-32 first, then a second seed. Runs in the
# background at the lowest priority and resumes from its committed state in $(CAMPAIGN):
# `kill -STOP $$(cat $(CAMPAIGN)/campaign.pid)` pauses it, `kill -CONT` resumes it.
CAMPAIGN ?= results/table32-cifar10
CAMPAIGN_ARGS ?= --table 32 --dataset cifar10 --recipe fast --seeds 0 1 --models rir32 resnet32 resnet_init32 cnn32

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# The main job: train RiR-32 on CIFAR-10 (JPEG copy) for a short budget, offline, then evaluate it.
demo: install
	$(BIN)/rir-keras train --model rir32 --dataset $(RIR_KERAS_DATA)/cifar10-jpeg.tar.gz \
		--epochs 1 --steps-per-epoch 60 --batch-size 128 --output runs/demo --restart

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run.py --output docs/benchmarks.md

campaign: install
	@mkdir -p $(CAMPAIGN)
	@if [ -f $(CAMPAIGN)/campaign.pid ] && kill -0 $$(cat $(CAMPAIGN)/campaign.pid) 2>/dev/null; then \
		echo "campaign already running: PID $$(cat $(CAMPAIGN)/campaign.pid)"; \
	else \
		nohup nice -n 19 $(BIN)/rir-keras reproduce $(CAMPAIGN_ARGS) --output $(CAMPAIGN) --verbose 2 \
			>> $(CAMPAIGN)/campaign.log 2>&1 & echo $$! > $(CAMPAIGN)/campaign.pid; \
		echo "campaign started: PID $$(cat $(CAMPAIGN)/campaign.pid), log $(CAMPAIGN)/campaign.log"; \
	fi

status: install
	$(BIN)/rir-keras reproduce --status $(CAMPAIGN)

# Commit the campaign's state, amending this session's previous campaign-state commit, and say how
# big this session's commits are against the submission limit (tools/campaign_commit.py).
campaign-commit: install
	$(BIN)/python tools/campaign_commit.py --campaign $(CAMPAIGN)

# The GPU path (tools/gpu/README.md): what a GPU session carries, and its dry run on this CPU in a
# fresh virtual environment without TensorFlow (Python 3.12 and jax 0.11.2 where available, as there).
gpu-prepare:
	bash tools/gpu/prepare.sh

gpu-dry-run:
	bash tools/gpu/dry_run.sh

clean:
	rm -rf $(VENV) runs
