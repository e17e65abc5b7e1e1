# Set-up and checks. `make book` builds the HTML book; `make test` runs every test.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JB     := $(VENV)/bin/jupyter-book

.PHONY: book test unit venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e ".[all]"
	touch $(STAMP)

# Execute every chapter and build the HTML book (warnings are errors).
book: $(STAMP)
	$(JB) build . -W -n --keep-going

unit: $(STAMP)
	$(PY) -m pytest tests -q

test: unit
	$(JB) build . -W -n --keep-going

clean:
	rm -rf _build
