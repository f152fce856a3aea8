# The user's verbs. Every target installs first when needed (the stamp file), so any of them
# works as the first command on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# CPU build by default; GPU users: make install TORCH="torch==2.13.0 --index-url <cuda index>"
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

ENV      ?= atari_pong
SEEDS    ?= 5
ARMS     ?= separate,coupled
PRESET   ?=
STEPS    ?=
JOBS     ?=
EXPERIMENT ?=
LAUNCHER ?= local
PORT     ?= 5000

ABLATION_ARGS = --env $(ENV) --seeds $(SEEDS) --arms $(ARMS) --launcher $(LAUNCHER) \
	$(if $(PRESET),--preset $(PRESET)) $(if $(STEPS),--steps $(STEPS)) \
	$(if $(JOBS),--jobs $(JOBS)) $(if $(EXPERIMENT),--experiment $(EXPERIMENT))

.PHONY: install test lint format train ablation report ui bench bench-learn clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -x -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# One run: make train ARGS="--env cartpole --schedule coupled --steps 5000"
train: $(STAMP)
	$(BIN)/python -m agent.train $(ARGS)

# The ablation: make ablation ENV=atari_pong SEEDS=5 [ARMS=...] [PRESET=] [STEPS=] [JOBS=] [EXPERIMENT=]
ablation: $(STAMP)
	$(BIN)/python -m ablations $(ABLATION_ARGS)

# The PDF report of an ablation (default: the most recent ablation in the store).
report: $(STAMP)
	$(BIN)/python -m reports.build $(if $(EXPERIMENT),--experiment $(EXPERIMENT))

# Benchmarks, not tests. Speed: both schedules side by side (SHAPE=peer-tiny|S: one update;
# VERSUS="train.compile=off": one update with and without those overrides, side by side;
# PROFILE=1: the profiler's op table of one update, with its kernel launches and syncs).
BENCH_ENV    ?= atari_pong
BENCH_PRESET ?= small
bench: $(STAMP)
	$(BIN)/python -m agent.bench --env $(BENCH_ENV) --preset $(BENCH_PRESET) $(if $(SHAPE),--shape $(SHAPE)) \
		$(foreach v,$(VERSUS),--versus $(v)) $(if $(PROFILE),--profile)

# Learning: the four arms x 2 seeds, with a table of best/final eval vs random.
LEARN_ENV ?= cartpole
bench-learn: $(STAMP)
	$(BIN)/python -m ablations.bench_learn --env $(if $(filter command line,$(origin ENV)),$(ENV),$(LEARN_ENV)) \
		$(if $(STEPS),--steps $(STEPS)) $(if $(JOBS),--jobs $(JOBS)) $(if $(PRESET),--preset $(PRESET))

# MLflow's UI on the same store the ablation writes to.
ui: $(STAMP)
	@uri="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"; \
	echo "MLflow UI for $$uri at http://127.0.0.1:$(PORT) (Ctrl-C to stop)"; \
	$(BIN)/mlflow ui --backend-store-uri "$$uri" --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# --- Scale out: Ray tasks and one MLflow tracking server (README "Scale out") ---------------
# make ablation LAUNCHER=ray [GPUS_PER_RUN=1] [CPUS_PER_RUN=4]: passed only when set.
GPUS_PER_RUN ?=
CPUS_PER_RUN ?=
ABLATION_ARGS += $(if $(GPUS_PER_RUN),--gpus-per-run $(GPUS_PER_RUN)) \
	$(if $(CPUS_PER_RUN),--cpus-per-run $(CPUS_PER_RUN))
HOST ?= 127.0.0.1
ALLOWED_HOSTS ?=

.PHONY: tracking-server

# One MLflow server for every machine's runs: metrics, artifacts and resume checkpoints go
# through it (workers need no shared disk). HOST=0.0.0.0 to serve other machines.
tracking-server: $(STAMP)
	@host="$(HOST)"; [ "$$host" = 0.0.0.0 ] && host="$$(hostname -I | cut -d' ' -f1)"; \
	echo "MLflow tracking server on $(HOST):$(PORT); on every machine: export MLFLOW_TRACKING_URI=http://$$host:$(PORT)"
	$(BIN)/mlflow server --host $(HOST) --port $(PORT) \
		--backend-store-uri sqlite:///$(CURDIR)/mlflow.db --artifacts-destination $(CURDIR)/mlartifacts \
		$(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS))

# --- Adaptive seeding (README "Adaptive seeding") ---------------------------------------------
# make ablation SEEDS=auto [INTERIM=5] [MAX_SEEDS=25] [ALPHA=0.05]: passed only when set.
INTERIM   ?=
MAX_SEEDS ?=
ALPHA     ?=
ADAPTIVE_ARGS = $(if $(INTERIM),--interim "$(INTERIM)") $(if $(MAX_SEEDS),--max-seeds "$(MAX_SEEDS)") \
	$(if $(ALPHA),--alpha "$(ALPHA)")
ABLATION_ARGS += $(ADAPTIVE_ARGS)

.PHONY: bench-stats

# Benchmark, not a test: false-positive rate, power and seeds used by adaptive seeding on
# synthetic scores, against Welch's t-test at the same maximum (REPS= ablations per row).
bench-stats: $(STAMP)
	$(BIN)/python -m analysis.bench_sequential $(ADAPTIVE_ARGS) $(if $(REPS),--reps "$(REPS)")
