# Everything a fresh machine needs: `make demo` trains, `make test` tests. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CIFAR-10 archives (cifar10-webp.tar.gz: the official data); `make demo RIR_KERAS_DATA=/path/to/folder`.
RIR_KERAS_DATA ?= $(abspath ../shared/datasets/cifar10)
export RIR_KERAS_DATA

.PHONY: demo test bench install clean campaign campaign-commit status compare gpu-prepare gpu-dry-run

# The training campaign (docs/results.md): Table 1's four 32-layer models on the official CIFAR-10
# (lossless), in stages run one after the other in the background at the lowest priority, each
# resuming from its committed state:
#   1. $(CAMPAIGN_FAST): RiR-32 and ResNet-32, seed 0, recipe `fast` (30 epochs): what the data
#      costs, set against the finished CIFAR-10 (JPEG copy) campaign in results/table32-cifar10;
#   2. $(CAMPAIGN_BF16): RiR-32, seed 0, recipe `fast` again, in mixed_bfloat16: does bfloat16
#      training reach float32's accuracy (issue 33)? Only on a CPU that computes bfloat16 natively
#      (elsewhere it would run emulated, slower than float32): other machines skip it for now;
#   3. $(CAMPAIGN_LONG): all four, recipe `long` (100 epochs), seed 0 of all four, then seed 1.
# $(CAMPAIGN_PID) holds the campaign's process-group ID: `kill -STOP -- -$$(cat $(CAMPAIGN_PID))`
# pauses every process of it, `kill -CONT -- -$$(cat $(CAMPAIGN_PID))` resumes it.
CAMPAIGN_FAST ?= results/table32-cifar10-fast
CAMPAIGN_BF16 ?= results/table32-cifar10-fast-bf16
CAMPAIGN_LONG ?= results/table32-cifar10-long
CAMPAIGNS := $(CAMPAIGN_FAST) $(CAMPAIGN_BF16) $(CAMPAIGN_LONG)
CAMPAIGN_PID ?= results/campaign.pid
CAMPAIGN_FAST_ARGS ?= --table 32 --dataset cifar10 --recipe fast --seeds 0 --models rir32 resnet32
CAMPAIGN_BF16_ARGS ?= --table 32 --dataset cifar10 --recipe fast --seeds 0 --models rir32 --precision mixed_bfloat16
CAMPAIGN_LONG_ARGS ?= --table 32 --dataset cifar10 --recipe long --seeds 0 1 --models rir32 resnet32 resnet_init32 cnn32

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# The main job: measure the shipped RiR-32 on the official CIFAR-10 test set, then train RiR-32 on
# CIFAR-10 for a short budget, offline.
demo: install
	$(BIN)/rir-keras evaluate --model rir32 --weights cifar10 --dataset cifar10
	$(BIN)/rir-keras train --model rir32 --dataset cifar10 \
		--epochs 1 --steps-per-epoch 60 --batch-size 128 --output runs/demo --restart

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 tests

bench: install
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run.py --output docs/benchmarks.md

campaign: install
	@mkdir -p $(CAMPAIGNS)
	@if [ -f $(CAMPAIGN_PID) ] && kill -0 $$(cat $(CAMPAIGN_PID)) 2>/dev/null; then \
		echo "campaign already running: process group $$(cat $(CAMPAIGN_PID))"; \
	else \
		setsid nohup nice -n 19 sh -c '\
			$(BIN)/rir-keras reproduce $(CAMPAIGN_FAST_ARGS) --output $(CAMPAIGN_FAST) --verbose 2 \
				>> $(CAMPAIGN_FAST)/campaign.log 2>&1 && \
			{ ! grep -qwE "avx512_bf16|amx_bf16" /proc/cpuinfo || \
			$(BIN)/rir-keras reproduce $(CAMPAIGN_BF16_ARGS) --output $(CAMPAIGN_BF16) --verbose 2 \
				>> $(CAMPAIGN_BF16)/campaign.log 2>&1; } && \
			$(BIN)/rir-keras reproduce $(CAMPAIGN_LONG_ARGS) --output $(CAMPAIGN_LONG) --verbose 2 \
				>> $(CAMPAIGN_LONG)/campaign.log 2>&1' > /dev/null 2>&1 & echo $$! > $(CAMPAIGN_PID); \
		echo "campaign started: process group $$(cat $(CAMPAIGN_PID)), logs $(CAMPAIGNS:%=%/campaign.log)"; \
	fi

status: install
	@for c in $(CAMPAIGNS); do [ -f $$c/campaign.json ] && $(BIN)/rir-keras reproduce --status $$c; done; true

# The finished models of every campaign side by side, the first (CIFAR-10, JPEG copy) included.
compare: install
	@$(BIN)/rir-keras reproduce --compare results/table32-cifar10 \
		$$(for c in $(CAMPAIGNS); do [ -f $$c/campaign.json ] && echo $$c; done)

# Commit the campaign's state, amending this session's previous campaign-state commit, and say how
# big this session's commits are against the submission limit (tools/campaign_commit.py).
campaign-commit: install
	$(BIN)/python tools/campaign_commit.py --campaign $(CAMPAIGNS) --pid-file $(CAMPAIGN_PID)

# The GPU path (tools/gpu/README.md): what a GPU session carries, and its dry run on this CPU in a
# fresh virtual environment without TensorFlow (Python 3.12 and jax 0.11.2 where available, as there).
gpu-prepare:
	bash tools/gpu/prepare.sh

gpu-dry-run:
	bash tools/gpu/dry_run.sh

clean:
	rm -rf $(VENV) runs
