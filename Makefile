# Two entry points, both from a fresh clone: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

.PHONY: install demo test
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/firth run examples/sample.yaml

test: $(STAMP)
	$(VENV)/bin/python -m pytest
