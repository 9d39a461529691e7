# dlrun: `make train` and `make test` install what they need first.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
DATA_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train test learn sweep tensorboard bench lint format clean

help:  ## list the targets
	@grep -hE '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# torch first, pinned to the releases on this disk, so nothing pulls another (several GB) torch.
	$(PYTHON) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	# every extra too (onnx, optuna, rl, safetensors, slurm: pyproject.toml), so that `make test` covers their features.
	$(PYTHON) -m pip install --quiet -e '.[dev,onnx,optuna,rl,safetensors,slurm]'
	touch $(STAMP)

install: $(STAMP)  ## make .venv and install dlrun (editable) with its dev tools and every extra

train: $(STAMP)  ## train the default: an MLP on the embedded digits dataset (ARGS="model=cnn ..." adds overrides)
	$(VENV)/bin/dlrun $(ARGS)

test: $(STAMP)  ## run the test suite, in two worker processes (pytest-xdist), but for the learning bars over 20 s
	$(PYTHON) -m pytest -n 2 -m "not long" $(ARGS)

learn: $(STAMP)  ## every learning check, the long ones too: the shipped defaults reach the figures in docs/
	$(PYTHON) -m pytest -n 2 tests/test_learning*.py $(ARGS)

sweep: $(STAMP)  ## an example sweep: two optimizers x two learning rates
	$(VENV)/bin/dlrun -m optimizer=adam,sgd optimizer.lr=1e-3,1e-2 $(ARGS)

tensorboard: $(STAMP)  ## serve the runs under outputs/ on http://localhost:6006
	$(VENV)/bin/tensorboard --logdir outputs --port 6006

bench: $(STAMP)  ## ratios: dlrun's trainer against a plain PyTorch loop, its data path against torchvision's ImageFolder
	$(PYTHON) benchmarks/bench_train.py $(ARGS)
	$(PYTHON) benchmarks/bench_data.py $(DATA_ARGS)

lint: $(STAMP)  ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## remove the venv, caches and outputs/
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
