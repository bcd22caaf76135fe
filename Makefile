# The README's two commands: `make sample` (build the datasets from the embedded sample) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup sample test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch's CPU build first: a plain torch requirement would pull a multi-GB CUDA build.
setup: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,eval,ray,embed,bench,test]'

sample: setup
	$(BIN)/instructkit build

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf builders/sft builders/rm builders/ppo builders/build_report.json
