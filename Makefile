# mmdwnet -- `make demo` and `make test` (see README.md); each creates the environment first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_EPOCHS ?=
# Written after tools/install.sh succeeds: `make demo` / `make test` (re)run the idempotent
# install when the environment is missing or its recipe changed since.
ENV_STAMP := $(VENV)/.mmdwnet-installed

.PHONY: install demo study test test-compile bench bench-compile bench-gpu analysis clean help

help:
	@echo "make demo      train, test and run a small DWNet and I-D-DWNet on digits -> work_dirs/demo/"
	@echo "               (then Cascade Mask R-CNN and UPerNet fine-tuned from DWNet's checkpoint)"
	@echo "make study     transfer study on digit scenes: pretrained vs scratch, DWNet, I-D-DWNet,"
	@echo "               toolbox Swin -> docs/downstream.md (STUDY_SEEDS=\"0 1\" for more seeds)"
	@echo "make test      run the test suite in $(VENV)"
	@echo "make test-compile  every preset trained by torch.compile(dynamic=True), inductor and aot_eager (slow)"
	@echo "make install   create $(VENV) with the whole OpenMMLab stack and mmdwnet (editable)"
	@echo "               (demo and test run it when $(VENV) is missing or out of date)"
	@echo "make bench     speed/memory benchmark and roofline -> docs/benchmark.md"
	@echo "make bench-roofline  only the roofline section of docs/benchmark.md (% of peak)"
	@echo "make bench-compile  torch.compile and channels-last (inference; training) -> docs/benchmark_compile.md"
	@echo "make bench-gpu CUDA speed/memory benchmark (needs a GPU) -> docs/benchmark_gpu.md"
	@echo "make analysis  measured connectivity table -> docs/analysis/"

install:
	bash tools/install.sh $(VENV)
	@touch $(ENV_STAMP)

$(ENV_STAMP): tools/install.sh setup.py $(wildcard requirements/*.txt)
	bash tools/install.sh $(VENV)
	@touch $@

test: $(ENV_STAMP)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-compile: $(ENV_STAMP)
	MMDWNET_TEST_INDUCTOR=1 $(PYTHON) -m pytest tests/engine/test_compile.py $(PYTEST_ARGS)

demo: $(ENV_STAMP)
	$(PYTHON) demo/digits_demo.py $(if $(DEMO_EPOCHS),--epochs $(DEMO_EPOCHS))

STUDY_SEEDS ?= 0
study: $(ENV_STAMP)
	$(PYTHON) tools/analysis_tools/downstream_transfer.py --seeds $(STUDY_SEEDS) \
		--out docs/downstream.md

bench:
	$(PYTHON) tools/analysis_tools/benchmark.py --out docs/benchmark.md

bench-compile:
	$(PYTHON) tools/analysis_tools/benchmark.py --out docs/benchmark_compile.md --compile \
		--channels-last --rounds 5 --no-train --no-unfused --no-batch1 --no-memory --no-ops \
		--no-roofline
	$(PYTHON) tools/analysis_tools/benchmark_compile_train.py --out docs/benchmark_compile.md \
		--rounds 3 --threads 2

.PHONY: bench-roofline
bench-roofline:
	$(PYTHON) tools/analysis_tools/benchmark.py --roofline-only --out docs/benchmark.md

bench-gpu:
	$(PYTHON) tools/analysis_tools/benchmark.py --device cuda --out docs/benchmark_gpu.md \
		--batch 64 128 --rounds 5

analysis:
	$(PYTHON) tools/analysis_tools/connectivity.py --out-dir docs/analysis

clean:
	rm -rf work_dirs .pytest_cache
