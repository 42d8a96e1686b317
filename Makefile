# deepfake-cli: every target is idempotent and stops on the first error.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEEPFAKE := $(BIN)/deepfake
DEMO := runs/demo
BACKBONE ?= effnet-lite0

.PHONY: install test demo bench clean help

help:
	@echo "make install | test | demo | bench | clean"

# The stamp is rebuilt only when pyproject.toml changes; torch/torchvision are pinned to the
# builds that install offline from this machine's disk.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q

# The whole pipeline on the bundled example images, offline, as far as the stages exist.
demo: install
	mkdir -p $(DEMO)
	$(DEEPFAKE) backbones
	$(DEEPFAKE) extract examples/data/cifake_sd14 examples/data/forensynths_biggan examples/data/forensynths_stylegan \
		--backbone $(BACKBONE) --layers all --out $(DEMO)/features.h5
	$(DEEPFAKE) info $(DEMO)/features.h5

bench: install
	$(BIN)/python benchmarks/bench_extract.py

clean:
	rm -rf runs
