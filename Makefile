# Two entry points, both from a fresh clone: `make demo` and `make test` (see README).
# Both install from requirements.lock, the tested set (torch==2.13.0: the CPU wheel).
PYTHON ?= python3
VENV ?= .venv
HASH := $(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)

$(VENV)/.installed-%-$(HASH): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[$*]'
	rm -f $(VENV)/.installed-$*-* && touch $@

.PHONY: install demo test test-fast lint-imports gpu-check-dry
install: $(VENV)/.installed-test-$(HASH)

demo: $(VENV)/.installed-all-$(HASH)
	$(VENV)/bin/firth run examples/sample.yaml

# The whole suite, import layers first (.importlinter). CI runs exactly this (.ci/run).
test: $(VENV)/.installed-test-$(HASH)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

# Tests that start no Ray, Dask, Beam, server or subprocess job: for iterating (about 4 minutes here).
test-fast: $(VENV)/.installed-test-$(HASH)
	$(VENV)/bin/pytest -m "not slow"

lint-imports: $(VENV)/.installed-test-$(HASH)
	$(VENV)/bin/lint-imports

# The GPU check's dry run on CPU (benchmarks/README.md, "GPU check"): every step of
# benchmarks/gpu_check.sh on a tiny export. STATS: vocabulary.parquet and tokens/ of the bench corpus.
STATS ?= firth-work/bench-stats
BENCH_CORPUS ?= /work/bench-corpus
gpu-check-dry: $(VENV)/.installed-all-$(HASH)
	PYTHONPATH=$(CURDIR) $(VENV)/bin/python benchmarks/gpu_check.py export --tiny --stats $(STATS) \
		--corpus $(BENCH_CORPUS) --dest firth-work/gpu-tiny
	DEVICE=cpu PYTHON=$(VENV)/bin/python benchmarks/gpu_check.sh firth-work/gpu-tiny firth-work/gpu-dry
