# deepfake-cli: every target is idempotent and stops on the first error.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEEPFAKE := $(BIN)/deepfake
DEMO := runs/demo
BACKBONE ?= effnet-lite0

.PHONY: install test test-fast demo bench bench-scale bench-train clean help

help:
	@echo "make install | test | test-fast | demo | bench | bench-scale | bench-train | clean"

# The stamp is rebuilt only when pyproject.toml changes; torch/torchvision are pinned to the
# builds that install offline from this machine's disk.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	touch $@

install: $(VENV)/.installed

# The suite in parallel (pytest-xdist, one worker per core; JOBS=1 runs it in one process). worksteal
# gives each worker a contiguous half of the tests (a file's module fixtures are mostly built once) and
# lets an idle worker take tests from the other's queue. Every run ends with the 20 slowest and the total.
JOBS ?= auto
PYTEST := $(BIN)/python -m pytest -q -n $(JOBS) --dist worksteal --durations=20
test: install
	$(PYTEST)

# The edit loop: everything but the tests marked @pytest.mark.slow.
test-fast: install
	$(PYTEST) -m "not slow"

# The whole pipeline on the bundled example images, offline: audit, extract, reduce, train on one
# generator, eval within and across datasets, predict on raw images. Rerunning reuses the features.
DEMO_SETS := cifake=examples/data/cifake_sd14 biggan=examples/data/forensynths_biggan \
	stylegan=examples/data/forensynths_stylegan
demo: install
	mkdir -p $(DEMO)
	$(DEEPFAKE) backbones
	$(DEEPFAKE) audit $(DEMO_SETS)
	$(DEEPFAKE) extract $(DEMO_SETS) --backbone $(BACKBONE) --layers all --out $(DEMO)/features.h5
	$(DEEPFAKE) info $(DEMO)/features.h5
	$(DEEPFAKE) reduce $(DEMO)/features.h5 --method pca --dim 32 --out $(DEMO)/pca32.reducer
	$(DEEPFAKE) train $(DEMO)/features.h5 --classifier lda,svm,knn3,linear-probe --reducer $(DEMO)/pca32.reducer \
		--datasets cifake --out $(DEMO)/models_cifake
	$(DEEPFAKE) train $(DEMO)/features.h5 --classifier lda,svm,knn3,linear-probe --reducer $(DEMO)/pca32.reducer \
		--datasets biggan --out $(DEMO)/models_biggan
	$(DEEPFAKE) predict $(DEMO)/models_biggan/lda.model examples/data/forensynths_stylegan \
		--out $(DEMO)/predictions.csv --html $(DEMO)/predictions.html
	head -n 5 $(DEMO)/predictions.csv
	$(DEEPFAKE) eval $(DEMO)/models_cifake $(DEMO)/models_biggan --features $(DEMO)/features.h5 --out $(DEMO)/eval
	@echo "demo outputs in $(DEMO)/: features.h5, models_*/, eval/eval.{csv,json,md}, predictions.csv, predictions.html"

bench: install
	$(BIN)/python benchmarks/bench_extract.py

# The cost curve of extraction (docs/RESULTS.md): N = 1k, 5k, 20k images of ../shared/data/cifake_20k,
# local engine and ray (2 model workers), effnet-lite0; needs the ray extra (pip install -e ".[ray]").
bench-scale: install
	$(BIN)/python benchmarks/bench_scale.py --sizes 1000,5000,20000 --engines local,ray --budget-min 45

# The cost curve of training (docs/RESULTS.md): every classifier at n = 1k, 5k, 20k training images of
# effnet-lite0 features of ../shared/data/cifake_20k, tested on ../shared/data/cifake_sd14; the Nystroem SVM
# (what svm switches to past 20,000 images) beside the exact one. Extracts the two feature files once.
BENCH := runs/bench
bench-train: install
	test -f $(BENCH)/cifake_20k.h5 || $(DEEPFAKE) extract ../shared/data/cifake_20k --backbone effnet-lite0 \
		--out $(BENCH)/cifake_20k.h5 -q
	test -f $(BENCH)/cifake_sd14.h5 || $(DEEPFAKE) extract ../shared/data/cifake_sd14 --backbone effnet-lite0 \
		--out $(BENCH)/cifake_sd14.h5 -q
	$(BIN)/python benchmarks/bench_train.py --features $(BENCH)/cifake_20k.h5 --test $(BENCH)/cifake_sd14.h5 \
		--compare svm:solver=nystroem --json $(BENCH)/train_cost.jsonl

clean:
	rm -rf runs
