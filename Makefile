# Set-up and checks. `make book` builds the HTML book; `make test` runs every test.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JB     := $(VENV)/bin/jupyter-book

# Book tooling (book/_tools): browser assets vendored from the npm registry, the nbval
# sanitizer, and the config copy that builds from the committed notebook outputs.
VENDOR      := .vendor/versions.json
SANITIZE    := book/_tools/nbval_sanitize.cfg
COMMITTED   := _build/_config_committed.yml
NBVAL_FLAGS := --nbval --nbval-sanitize-with $(SANITIZE) --ignore=_build --ignore=book/_build \
               -p no:cacheprovider -q
STRICT      := -W -n --keep-going

.PHONY: book test unit venv clean notebooks nbval book-committed html-tests student

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e ".[all]"
	touch $(STAMP)

$(VENDOR): book/_tools/vendor_assets.py book/_tools/mathjax_hub_shim.js | $(STAMP)
	$(PY) book/_tools/vendor_assets.py

# Execute every chapter and build the HTML book (warnings are errors).
book: $(STAMP) $(VENDOR)
	$(JB) build . $(STRICT)

unit: $(STAMP)
	$(PY) -m pytest tests -q

# Unit tests; every chapter re-executed by nbval and compared with its committed outputs;
# the strict HTML build from those outputs (no second execution); the browser tests.
test: unit
	$(MAKE) --no-print-directory nbval
	$(MAKE) --no-print-directory book-committed
	$(MAKE) --no-print-directory html-tests

nbval: $(STAMP)
	$(PY) -m pytest book/ $(NBVAL_FLAGS)

book-committed: $(STAMP) $(VENDOR)
	$(PY) book/_tools/committed_config.py $(COMMITTED)
	$(JB) build . --config $(COMMITTED) $(STRICT)

html-tests: $(STAMP)
	BOOK_HTML_REQUIRED=1 $(PY) -m pytest tests/test_book_html.py -q -p no:cacheprovider

# Student edition: every chapter without its worked solutions, stubs and checks kept
# (book/_tools/student_edition.py), written to _build/student/.
student: $(STAMP)
	$(PY) book/_tools/student_edition.py --out _build/student

# Refresh the committed outputs: sync the Colab cells, execute every chapter in place.
notebooks: $(STAMP)
	$(PY) book/_tools/sync_colab_cells.py
	$(PY) book/_tools/execute.py

clean:
	rm -rf _build

# Benchmarks (benchmarks/README.md): every benchmark at CPU-sized settings in a few minutes,
# results in benchmarks/results/quick/. BENCH_ARGS="--full --compile --book" gives the
# reported settings (hours on 2 cores), results in benchmarks/results/.
.PHONY: bench
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)
