# Quick start: `make train` and `make test`. Both set up .venv first when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
STUDY  ?= compare_models

.PHONY: export bench-export bench-optuna optuna-dashboard setup setup-optuna setup-slurm setup-ray setup-ui setup-postgres setup-scale lock train compare report reproduce explain download stats bench bench-models bench-trainer \
	bench-store bench-store-wait bench-launchers bench-thresholds bench-statistics bench-gpu bench-feed bench-compile bench-repro test test-fast test-all test-faults test-scale lint format ui ui-shots chromium postgresql\
	slurm-wlm serve clean

setup: $(STAMP)

# every version pinned by constraints.txt (what CI tested); `make lock` refreshes it
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "taco needs Python >= 3.11; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# opt-in tools and launchers: the Optuna dashboard, hydra/launcher=submitit_*, ray; the
# PostgreSQL driver of a team server (postgres)
setup-optuna setup-slurm setup-ui setup-postgres: setup-%: $(VENV)/.installed-%

$(VENV)/.installed-optuna $(VENV)/.installed-slurm $(VENV)/.installed-ui \
$(VENV)/.installed-postgres: $(VENV)/.installed-%: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,$*]'
	touch $@

setup-ray: $(VENV)/.installed-ray

# not under constraints.txt: the Ray launcher pins cloudpickle < 3
$(VENV)/.installed-ray: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $@

# constraints.txt from a new venv with every extra but ray (which pins cloudpickle < 3)
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev,optuna,slurm,ui,postgres]'
	( echo "# Versions \`make setup\` installs (pip constraints): every machine gets what CI tested."; \
	  echo "# Refresh with \`make lock\` after changing pyproject.toml's dependencies."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' \
	) > constraints.txt
	rm -rf .venv-lock

train: setup
	$(BIN)/taco-train $(ARGS)

# a study from experiments/ as one Hydra multirun (one MLflow parent run, a child per job)
compare: setup
	$(BIN)/taco-train experiment=$(STUDY) $(ARGS)

# the latest sweep's model x class test F1 table -> experiments/$(STUDY)/REPORT.md
report: setup
	$(BIN)/taco-compare --report experiments/$(STUDY) $(ARGS)

# re-run a study, then print each number of its committed report beside the new one: identical
# mode on the machine of its reproduce.json (every number equal), statistical mode elsewhere (each
# macro F1 within its prediction interval); exit 1 if that fails; the committed files stay as they are
reproduce: setup
	$(BIN)/taco-train experiment=$(STUDY) $(ARGS)
	$(BIN)/taco-compare --check experiments/$(STUDY)

# why a model fails: `make explain ARGS="run_id=<run or models:/NAME/VERSION>"` (or sweep=<parent>)
explain: setup
	$(BIN)/taco-explain $(ARGS)

download: setup
	$(BIN)/taco-download $(ARGS)

stats: setup
	$(BIN)/taco-stats $(ARGS)

bench: setup
	$(BIN)/python benchmarks/pipeline.py $(ARGS)

bench-trainer: setup
	$(BIN)/python benchmarks/trainer.py $(ARGS)

# GPU: VGG16/Xception through the Trainer vs raw model.fit, TFLOP/s, the pool alone at 0..16
# workers (4 minutes on one GPU); without a GPU only the pool part
bench-gpu: setup
	$(BIN)/python benchmarks/gpu.py $(ARGS)

# any machine: a near-free model through the Trainer vs its raw model.fit vs the pool alone
bench-feed: setup
	$(BIN)/python benchmarks/feed.py $(ARGS)

# a 2-job JAX sweep with XLA's persistent compilation cache and without: each job's first epoch
bench-compile: setup
	$(BIN)/python benchmarks/compile.py $(ARGS)

# the epoch-time cost of trainer.cpu_isa=AVX2 against no cap, alternating processes
bench-repro: setup
	$(BIN)/python benchmarks/reproducibility.py $(ARGS)

bench-models: setup
	$(BIN)/python benchmarks/models.py $(ARGS)

# 8, then 16 processes log a full run each at once: a new SQLite store, a local mlflow server on
# SQLite, one on PostgreSQL
bench-store: setup-postgres postgresql
	$(BIN)/python benchmarks/store.py $(ARGS)

# one 4-job sweep on the basic, joblib, Ray and SLURM launchers (engines of this machine): wall
bench-launchers: setup-scale
	$(BIN)/python benchmarks/launchers.py $(ARGS)

# the cost of the store waiter on a store that is not busy: taco's logger vs MLflow's calls
bench-store-wait: setup
	$(BIN)/python benchmarks/store_wait.py $(ARGS)

# the simulations behind README "How sure is a number?": coverage, type-I error, power
# what an export costs: the CNN, VGG16 and Xception heads trained, exported to ONNX and LiteRT
# at float32, float16 and int8, beside Keras (macro F1, largest class drop, size, latency)
bench-export: setup
	$(BIN)/python benchmarks/export.py $(ARGS)

# does pruning save time at equal quality? taco's sweeper (no pruning, median, Hyperband) and
# hydra-optuna-sweeper 1.3 (in .venv-optuna2), over 3 sampler seeds; 2 workers' idle shares
bench-optuna: setup
	$(BIN)/python benchmarks/optuna_sweepers.py $(ARGS)

bench-statistics: setup
	$(BIN)/python benchmarks/simulations.py $(ARGS)

# threshold rules re-fitted on a sweep's logged validation predictions, scored on its test ones
bench-thresholds: setup
	$(BIN)/python benchmarks/thresholds.py $(ARGS)

# every test on TensorFlow (the default backend), then the backend-sensitive ones on JAX
# HOME empty, as on a fresh machine: nothing left in ~ (a token, a cache, a config) can help
# tests run on TEST_WORKERS processes (pytest-xdist): on a 2-core Intel, 2 workers took the test
# time from 545 s to 311 s (a tiny job waits on start-up and the store as much as it computes);
# TEST_WORKERS=0: one process
TEST_WORKERS ?= 2
test: setup
	home=$$(mktemp -d) && export HOME=$$home && \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) $(ARGS) && \
	  KERAS_BACKEND=jax $(BIN)/python -m pytest -n $(TEST_WORKERS) -m 'backend and not slow' $(ARGS); \
	  status=$$?; rm -rf $$home; exit $$status

# the in-process tier alone (no test that starts a fresh taco-* or Python process): a quick
# check while editing; `make test` runs every tier
test-fast: setup
	$(BIN)/python -m pytest -m 'not slow and not subprocess' $(ARGS)

# the fault suite alone (tests/faults/: annotations, images, config, process, store, cache,
# resume, disk, loading, sweep dir, augmentation pool), its slow tests included;
# `make test` runs all but the slow ones
test-faults: setup
	$(BIN)/python -m pytest -m '' tests/faults $(ARGS)

# beyond one machine, on real engines started on 127.0.0.1 (tests/scale/): a team server on
# PostgreSQL, a Ray cluster, a one-node SLURM cluster; Debian's packages installed when missing.
# setup-ray comes last: an install under constraints.txt would lift its cloudpickle < 3 pin
setup-scale: setup-slurm setup-postgres setup-ray postgresql slurm-wlm

# HOME empty: nothing left in ~ by hand (a Ray token, a .pgpass, a munge key) can help it pass
test-scale: setup-scale
	home=$$(mktemp -d) && HOME=$$home $(BIN)/python -m pytest -m scale $(ARGS); \
	  status=$$?; rm -rf $$home; exit $$status

test-all: setup-optuna setup-ui setup-scale chromium
	$(BIN)/python -m pytest -m '' $(ARGS)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -m backend $(ARGS)

lint: setup
	$(BIN)/ruff check taco tests benchmarks tools
	$(BIN)/ruff format --check taco tests benchmarks tools
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -p no:cacheprovider --no-header -o addopts= tests/test_layout.py

format: setup
	$(BIN)/ruff format taco tests benchmarks tools
	$(BIN)/ruff check --fix taco tests benchmarks tools

TRACKING_URI = $$($(BIN)/python -c 'from taco.config import default_tracking_uri as u; print(u())')
MODEL ?=
PORT  ?= 5001

# MLflow 3.17 opens experiments on its GenAI view until the sidebar's "Model training" toggle is
# used once in a browser (it keeps the choice); the experiment's own tag no longer decides
ui: setup
	@echo "MLflow UI: http://127.0.0.1:5000 (first time in this browser: sidebar toggle GenAI -> Model training)"
	$(BIN)/mlflow ui --backend-store-uri "$(TRACKING_URI)" --host 127.0.0.1 --port 5000

# a trained model as a file a device runs: make export RUN=<run id|last|models:/NAME/VERSION>
# FORMAT=onnx|litert QUANTIZE=none|float16 (taco-export; README "Deploying a model")
RUN ?= last
FORMAT ?= onnx
QUANTIZE ?= none
export: setup
	$(BIN)/taco-export --model $(RUN) --format $(FORMAT) --quantize $(QUANTIZE) $(ARGS)

# the hyperparameter searches' Optuna studies (optuna.db beside mlflow.db, or TACO_OPTUNA_STORAGE)
OPTUNA_STORAGE ?= $(or $(TACO_OPTUNA_STORAGE),sqlite:///$(abspath optuna.db))
optuna-dashboard: setup-optuna
	@echo "Optuna dashboard: http://127.0.0.1:8080 ($(OPTUNA_STORAGE))"
	$(BIN)/optuna-dashboard "$(OPTUNA_STORAGE)" --host 127.0.0.1 --port 8080

# docs/ui_*.png: a small sweep in a throwaway store, MLflow's UI on a free port, headless Chromium
ui-shots: setup-ui chromium
	$(BIN)/python -m tools.ui_shots --out docs $(ARGS)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian's Chromium, for ui-shots and its test (Playwright drives it; it downloads no browser)
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

# Debian's PostgreSQL server programs (initdb, pg_ctl), for a team server's database
postgresql:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	  --no-install-recommends postgresql; }

# Debian's SLURM daemons and munge, for a one-node cluster on this machine (tools/engines.py)
slurm-wlm:
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged \
	  >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) \
	  apt-get install -y -qq --no-install-recommends slurm-wlm munge; }

# a logged or registered model behind MLflow's scoring server (POST /invocations), this venv's env
serve: setup
	@test -n "$(MODEL)" || { echo "make serve MODEL=models:/NAME/VERSION (or runs:/RUN_ID/model)"; exit 2; }
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_TRACKING_URI="$(TRACKING_URI)" \
	  $(BIN)/mlflow models serve -m "$(MODEL)" --env-manager local -h 127.0.0.1 -p $(PORT)

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
