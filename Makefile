# hashbench — run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Tests and demos never wait on the network: W&B stays offline and the HF hub is not contacted.
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.DEFAULT_GOAL := help
.PHONY: help install test test-all lint format bench demo clean fashion-mnist tables gpu-check docs

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(BIN)/hashbench: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	@touch $@

install: $(BIN)/hashbench ## Create .venv and install hashbench with the pinned, tested versions (constraints.txt)

test: install ## Run the test suite (skips tests marked slow/data; what CI runs)
	$(BIN)/python -m pytest -q -m "not slow and not data"

test-all: install ## Run every test, slow ones included (data tests still need the datasets)
	$(BIN)/python -m pytest -q

docs: install ## Rewrite README.md's method table from the registry (`hashbench list --markdown`)
	$(BIN)/python -c "from hashbench.docs import update_readme; update_readme('README.md')"

lint: install ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Apply ruff's formatter and autofixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

SPEED_BENCHMARKS := eval_speed data_speed train_step dhih_scaling udmsh_memory
bench: install ## Run the speed/memory benchmarks and print their tables (result tables: make table-<name>)
	@for b in $(SPEED_BENCHMARKS); do echo "== benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || exit 1; done

gpu-check: install ## On a CUDA machine (offline, < 8 min): paper-cell step time fp32/bf16, 2-GPU DDP cell, 10k x 1M GPU eval
	$(BIN)/python benchmarks/gpu_check.py $(ARGS)

FMNIST_DEB := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
fashion-mnist: ## Put Fashion-MNIST on disk: Debian's dataset-fashion-mnist when root (else torchvision downloads it)
	@if [ -z "$$HASHBENCH_DATA" ] && [ ! -f $(FMNIST_DEB) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; fi

demo: install fashion-mnist ## The smoke table: every method on Fashion-MNIST, 3 epochs, 1 seed -> leaderboards/demo.md|csv|png
	$(BIN)/hashbench table demo

table-%: install ## Regenerate leaderboards/<name>.md from experiments/tables/<name>.yaml (ARGS="--seeds 3 ...")
	$(BIN)/hashbench table $* $(ARGS)

tables: install ## List the table specs
	$(BIN)/hashbench table --list

clean: ## Remove caches and run outputs (keeps .venv and the results store)
	rm -rf .pytest_cache .ruff_cache lightning_logs runs wandb
