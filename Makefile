# The two set-up commands of the README: `make demo` (index the bundled examples and
# search them) and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -m "not slow and not gpu"
# The reference reranker's pinned libraries, beside (not in) the venv: see
# tests/reference-requirements.txt.
REFERENCE := $(VENV)/reference-4.57

# The browser tests drive Debian's chromium (Playwright's own download needs the network).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv demo test lint browser

venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

demo: venv
	$(BIN)/python -m pip install -q -e ".[cpu]"
	rm -rf runs/examples
	$(BIN)/vlsearch index build --input examples/products.jsonl --out runs/examples
	$(BIN)/vlsearch search --index runs/examples --text "a poster of a cat"
	$(BIN)/vlsearch search --index runs/examples --image examples/media/rocket.jpg --top-k 3

test: venv browser
	$(BIN)/python -m pip install -q -e ".[cpu,dev,eval,text,vllm,documents,milvus-lite,serve,ui]"
	$(MAKE) $(REFERENCE)/.installed
	VLSEARCH_REFERENCE_SITE=$(REFERENCE) $(BIN)/python -m pytest $(PYTEST_ARGS)

$(REFERENCE)/.installed: tests/reference-requirements.txt
	rm -rf $(REFERENCE)
	$(BIN)/python -m pip install -q --no-deps --no-compile --target $(REFERENCE) \
		-r tests/reference-requirements.txt
	touch $@

browser:
	test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && \
		$(SUDO) apt-get install -y -q chromium; }

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
