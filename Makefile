# mmdwnet -- `make install` then `make test` (see README.md).
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test bench bench-compile bench-gpu analysis clean help

help:
	@echo "make install   create $(VENV) with the whole OpenMMLab stack and mmdwnet (editable)"
	@echo "make test      run the test suite in $(VENV)"
	@echo "make bench     speed/memory benchmark -> docs/benchmark.md"
	@echo "make bench-compile  inference with torch.compile and channels-last -> docs/benchmark_compile.md"
	@echo "make bench-gpu CUDA speed/memory benchmark (needs a GPU) -> docs/benchmark_gpu.md"
	@echo "make analysis  measured connectivity table -> docs/analysis/"

install:
	bash tools/install.sh $(VENV)

test:
	@test -x $(PYTHON) || { echo "no environment at $(VENV): run 'make install' first"; exit 1; }
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench:
	$(PYTHON) tools/analysis_tools/benchmark.py --out docs/benchmark.md

bench-compile:
	$(PYTHON) tools/analysis_tools/benchmark.py --out docs/benchmark_compile.md --compile \
		--channels-last --rounds 5 --no-train --no-unfused --no-batch1 --no-memory --no-ops

bench-gpu:
	$(PYTHON) tools/analysis_tools/benchmark.py --device cuda --out docs/benchmark_gpu.md \
		--batch 64 128 --rounds 5

analysis:
	$(PYTHON) tools/analysis_tools/connectivity.py --out-dir docs/analysis

clean:
	rm -rf work_dirs .pytest_cache
