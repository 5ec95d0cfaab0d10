# The README's commands. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slurm test-all lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/bids-synth demo demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

# a real single-node Slurm (Debian's slurm-wlm and munge) started and stopped by the test
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q -rs -p no:xdist -m slurm tests/test_slurm.py

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check bids_synth tests benchmarks
	$(BIN)/ruff format --check bids_synth tests benchmarks

clean:
	rm -rf demo_output work .pytest_cache
