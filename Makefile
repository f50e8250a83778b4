# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= models/quickstart
FILE   ?= examples/article.txt
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-slow test-spark test-distributed test-registry test-browser lint train-quickstart corpus gold serve export bench mlflow-ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	# torch is pinned in pyproject.toml: 2.13.0 is the CPU build; an unpinned torch pulls CUDA.
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

$(MODEL)/model.safetensors: | $(VENV)/.installed
	$(BIN)/claimlens-train --config configs/quickstart.yaml

train-quickstart: $(MODEL)/model.safetensors

demo: install $(MODEL)/model.safetensors
	@$(BIN)/claimlens analyze --model $(MODEL) --color always $(FILE)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

# An optional extra on top of the dev install: $(VENV)/.installed-spark installs ".[dev,spark]", and so on.
$(VENV)/.installed-%: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev,$*]"
	touch $@

# `claimlens batch` on Spark in local[2] mode; Spark needs Java 17 or 21 (`java -version`).
test-spark: $(VENV)/.installed-spark
	@command -v java >/dev/null || [ -n "$${JAVA_HOME:-}" ] || { echo 'test-spark needs Java 17+: apt-get install openjdk-17-jre-headless' >&2; exit 1; }
	$(BIN)/python -m pytest -m spark

# torchrun --nproc_per_node=2 on the tiny config (gloo): disjoint shards, equal weights, resume.
test-distributed: install
	$(BIN)/python -m pytest -m distributed

# A real `mlflow server` on loopback: registered versions, promote, models:/ URIs, `mlflow models serve`.
test-registry: install
	$(BIN)/python -m pytest -m registry

# The article page at / in Debian's chromium, driven by Playwright (never `playwright install`).
test-browser: $(VENV)/.installed-browser
	@test -x /usr/bin/chromium || { echo 'test-browser needs /usr/bin/chromium: apt-get install chromium' >&2; exit 1; }
	$(BIN)/python -m pytest -m browser tests/test_browser.py

lint: install
	$(BIN)/ruff check inference training tests benchmarks
	$(BIN)/mypy inference training

corpus: install
	$(BIN)/python -m training.corpus

serve: install $(MODEL)/model.safetensors
	$(BIN)/claimlens serve --model $(MODEL)

export: install $(MODEL)/model.safetensors
	$(BIN)/claimlens export --model $(MODEL) --format onnx --quantize int8

# Speed against a `pipeline` baseline, offline and through the server (tables + benchmarks/results/*.json).
bench: install $(MODEL)/model.safetensors
	$(BIN)/python -m benchmarks.offline --model $(MODEL)
	$(BIN)/python -m benchmarks.serve --model $(MODEL) --backend onnx --quantize int8

mlflow-ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
