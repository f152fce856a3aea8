# The user's verbs. Every target installs first when needed (the stamp file), so any of them
# works as the first command on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# CPU build by default; GPU users: make install TORCH="torch==2.13.0 --index-url <cuda index>"
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

# Every value from the command line reaches the shell as one quoted word, so that
# EXPERIMENT='x; echo hi' names an experiment instead of running a command: q quotes one
# value, qw quotes each space-separated word of a list (SET, TORCH, ARGS).
q  = '$(subst ','\'',$(1))'
qw = $(foreach w,$(1),$(call q,$(w)))

ENV      ?= atari_pong
SEEDS    ?= 5
ARMS     ?= separate,coupled
PRESET   ?=
STEPS    ?=
JOBS     ?=
SET      ?=
EXPERIMENT ?=
LAUNCHER ?= local
PORT     ?= 5000

# SET="train.train_ratio=32 train.eval_every=500": config overrides, one --set each.
ABLATION_ARGS = $(ENV_ARG) --seeds $(call q,$(SEEDS)) --arms $(call q,$(ARMS)) \
	--launcher $(call q,$(LAUNCHER)) $(if $(PRESET),--preset $(call q,$(PRESET))) \
	$(if $(STEPS),--steps $(call q,$(STEPS))) $(if $(JOBS),--jobs $(call q,$(JOBS))) \
	$(if $(EXPERIMENT),--experiment $(call q,$(EXPERIMENT))) \
	$(foreach s,$(SET),--set $(call q,$(s)))

# Tasks and arms: SUITE=classic runs a named list of tasks (ENV then stays unset; ENV=a,b,c
# lists tasks by hand); ARMS_FILE=arms.toml and ARM="name:key=value,key=value ..." add user
# arms; REFERENCE=<arm> is the arm every other is compared with; GRID="key=v1,v2" crosses
# every arm with each value.
SUITE     ?=
ARMS_FILE ?=
ARM       ?=
REFERENCE ?=
GRID      ?=
ENV_ARG = $(if $(and $(SUITE),$(filter file,$(origin ENV))),,--env $(call q,$(ENV)))
ABLATION_ARGS += $(if $(SUITE),--suite $(call q,$(SUITE))) \
	$(if $(ARMS_FILE),--arms-file $(call q,$(ARMS_FILE))) $(foreach a,$(ARM),--arm $(call q,$(a))) \
	$(if $(REFERENCE),--reference $(call q,$(REFERENCE))) $(if $(GRID),--grid $(call q,$(GRID)))

.PHONY: install test test-all lint format train ablation study publish report export ui bench bench-learn bench-throughput clean

$(STAMP): pyproject.toml
	$(call q,$(PYTHON)) -m venv $(VENV)
	$(BIN)/pip install -q $(call qw,$(TORCH))
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $@

install: $(STAMP)

# The fast tier (unit tests and one small end-to-end ablation, a few minutes), and the whole
# suite (what CI runs; tests marked slow, see tests/conftest.py, are in it only).
test: $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not slow" --durations=10

test-all: $(STAMP)
	$(BIN)/python -m pytest -x -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# One run: make train ARGS="--env cartpole --schedule coupled --steps 5000"
train: $(STAMP)
	$(BIN)/python -m agent.train $(call qw,$(ARGS))

# The ablation: make ablation ENV=atari_pong SEEDS=5 [ARMS=...] [PRESET=] [STEPS=] [JOBS=] [EXPERIMENT=] [SET=]
# [SUITE=classic] [ARMS_FILE=] [ARM=] [REFERENCE=] [GRID=]
ablation: $(STAMP)
	$(BIN)/python -m ablations $(ABLATION_ARGS)

# A study: studies/<STUDY>.toml sets tasks, arms, seeds (or the adaptive rule), preset and
# config values; it runs through the same runner, in an experiment named after the study.
STUDY ?=
# DRY=1 prints the runs and the estimate on this machine, and creates nothing (the publish
# line then runs as the arguments of `true`).
DRY ?=
study: $(STAMP)
	$(BIN)/python -m ablations --study $(call q,$(STUDY)) --launcher $(call q,$(LAUNCHER)) \
		$(if $(JOBS),--jobs $(call q,$(JOBS))) $(if $(EXPERIMENT),--experiment $(call q,$(EXPERIMENT))) \
		$(RESOURCE_ARGS) $(if $(DRY),--dry-run)
	$(if $(DRY),@true ,)$(BIN)/python -m ablations.publish --study $(call q,$(STUDY)) \
		$(if $(EXPERIMENT),--experiment $(call q,$(EXPERIMENT))) $(if $(OUT),--out $(call q,$(OUT)))

# Publish a study that has run: results/<name>/ with what make export writes, the PDF and a README.
# FROM=results/<name> publishes that folder again from its own files (report, README and
# cautions rebuilt by this code); a merged study (merge = [...]) reads its parts' folders.
publish: $(STAMP)
	$(BIN)/python -m ablations.publish --study $(call q,$(STUDY)) $(if $(FROM),--from $(call q,$(FROM))) \
		$(if $(EXPERIMENT),--experiment $(call q,$(EXPERIMENT))) $(if $(OUT),--out $(call q,$(OUT)))

# The PDF report of an ablation (default: the most recent ablation in the store), or with
# FROM=results/<name> from a folder make export wrote, without any MLflow store; either way
# into reports/out/<name>.pdf.
FROM ?=
OUT  ?=
report: $(STAMP)
	$(BIN)/python -m reports.build $(if $(FROM),--from $(call q,$(FROM))) \
		$(if $(EXPERIMENT),--experiment $(call q,$(EXPERIMENT)))

# An ablation's results as small text files that rebuild its report (docs/reports.md: runs.csv,
# curves.csv, ablation.json, decisions.csv when adaptive, cautions.txt):
# make export [EXPERIMENT=name] [OUT=results/name] (defaults: the latest ablation, results/<name>).
export: $(STAMP)
	$(BIN)/python -m analysis.export $(if $(EXPERIMENT),--experiment $(call q,$(EXPERIMENT))) \
		$(if $(OUT),--out $(call q,$(OUT)))

# Benchmarks, not tests. Speed: both schedules side by side (SHAPE=peer-tiny|S: one update;
# VERSUS="train.compile=off": one update with and without those overrides, side by side;
# PROFILE=1: the profiler's op table of one update, with its kernel launches and syncs).
# A SHAPE brings its own preset, so the preset (PRESET, else BENCH_PRESET) goes only without one.
BENCH_ENV    ?= atari_pong
BENCH_PRESET ?= small
bench: $(STAMP)
	$(BIN)/python -m benchmarks.speed --env $(call q,$(BENCH_ENV)) \
		$(if $(SHAPE),--shape $(call q,$(SHAPE)),--preset $(call q,$(or $(PRESET),$(BENCH_PRESET)))) \
		$(foreach v,$(VERSUS),--versus $(call q,$(v))) $(if $(PROFILE),--profile)

# Throughput. First seeds as a batch: updates/s per core of SEED_KS seeds in one batched model
# against one run per process (CartPole at the debug and small presets, starts last and all;
# with SHAPE, that shape on BENCH_ENV). Then KS concurrent runs on one device (SHAPE, default
# S, or PRESET; UPDATES timed per run): aggregate updates/s per k and a 5-seed x 2-arm
# ablation's wall-clock at the best k.
KS ?= 1,2,4,8
SEED_KS ?= 1,2,4,8,10
bench-throughput: $(STAMP)
	$(BIN)/python -m benchmarks.seed_batch --ks $(call q,$(SEED_KS)) \
		$(if $(SHAPE),--shape $(call q,$(SHAPE)) --env $(call q,$(BENCH_ENV)))
	$(BIN)/python -m benchmarks.throughput --ks $(call q,$(KS)) \
		--env $(call q,$(if $(filter command line,$(origin ENV)),$(ENV),$(BENCH_ENV))) \
		$(if $(SHAPE),--shape $(call q,$(SHAPE))) $(if $(PRESET),--preset $(call q,$(PRESET))) \
		$(if $(UPDATES),--updates $(call q,$(UPDATES))) $(foreach s,$(SET),--set $(call q,$(s)))

# Learning: the four arms (or ARMS=...) x 2 seeds (or SEEDS=...), with a table of best/final eval vs random.
LEARN_ENV ?= cartpole
bench-learn: $(STAMP)
	$(BIN)/python -m benchmarks.learning \
		--env $(call q,$(if $(filter command line,$(origin ENV)),$(ENV),$(LEARN_ENV))) \
		$(if $(STEPS),--steps $(call q,$(STEPS))) $(if $(JOBS),--jobs $(call q,$(JOBS))) \
		$(if $(PRESET),--preset $(call q,$(PRESET))) \
		$(if $(filter command line,$(origin ARMS)),--arms $(call q,$(ARMS))) \
		$(if $(filter command line,$(origin SEEDS)),--seeds $(call q,$(SEEDS))) \
		$(if $(STUDY),--study $(call q,$(STUDY)))

# MLflow's UI on the same store the ablation writes to; it prints the address of the latest
# ablation's runs grouped by arm (by task and arm over several tasks).
ui: $(STAMP)
	@db=$(call q,sqlite:///$(CURDIR)/mlflow.db); uri="$${MLFLOW_TRACKING_URI:-$$db}"; port=$(call q,$(PORT)); \
	echo "MLflow UI for $$uri (Ctrl-C to stop); open:"; \
	echo "  $$($(BIN)/python -m ablations.tracking.ui "$$uri" "$$port" 2>/dev/null || echo http://127.0.0.1:$$port/)"; \
	$(BIN)/mlflow ui --backend-store-uri "$$uri" --host 127.0.0.1 --port "$$port"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# --- Scale out: Ray tasks and one MLflow tracking server (docs/scale-out.md) ---------------
# make ablation LAUNCHER=ray [GPUS_PER_RUN=1] [CPUS_PER_RUN=4]: passed only when set.
# make ablation RUNS_PER_GPU=4: the local launcher's k runs sharing each GPU (CUDA MPS).
# make ablation SEED_BATCH=4: up to 4 seeds of an arm trained by one process as one batched model.
GPUS_PER_RUN ?=
CPUS_PER_RUN ?=
RUNS_PER_GPU ?=
SEED_BATCH ?=
RESOURCE_ARGS = $(if $(GPUS_PER_RUN),--gpus-per-run $(call q,$(GPUS_PER_RUN))) \
	$(if $(CPUS_PER_RUN),--cpus-per-run $(call q,$(CPUS_PER_RUN))) \
	$(if $(RUNS_PER_GPU),--runs-per-gpu $(call q,$(RUNS_PER_GPU))) \
	$(if $(SEED_BATCH),--seed-batch $(call q,$(SEED_BATCH)))
ABLATION_ARGS += $(RESOURCE_ARGS)
HOST ?= 127.0.0.1
ALLOWED_HOSTS ?=

.PHONY: tracking-server

# One MLflow server for every machine's runs: metrics, artifacts and resume checkpoints go
# through it (workers need no shared disk). HOST=0.0.0.0 to serve other machines.
tracking-server: $(STAMP)
	@bind=$(call q,$(HOST)); port=$(call q,$(PORT)); host="$$bind"; \
	[ "$$host" = 0.0.0.0 ] && host="$$(hostname -I | cut -d' ' -f1)"; \
	echo "MLflow tracking server on $$bind:$$port; on every machine: export MLFLOW_TRACKING_URI=http://$$host:$$port"
	$(BIN)/mlflow server --host $(call q,$(HOST)) --port $(call q,$(PORT)) \
		--backend-store-uri $(call q,sqlite:///$(CURDIR)/mlflow.db) \
		--artifacts-destination $(call q,$(CURDIR)/mlartifacts) \
		$(if $(ALLOWED_HOSTS),--allowed-hosts $(call q,$(ALLOWED_HOSTS)))

# --- Adaptive seeding (docs/adaptive-seeding.md) ---------------------------------------------
# make ablation SEEDS=auto [INTERIM=5] [MAX_SEEDS=25] [ALPHA=0.05]: passed only when set.
INTERIM   ?=
MAX_SEEDS ?=
ALPHA     ?=
ADAPTIVE_ARGS = $(if $(INTERIM),--interim $(call q,$(INTERIM))) $(if $(MAX_SEEDS),--max-seeds $(call q,$(MAX_SEEDS))) \
	$(if $(ALPHA),--alpha $(call q,$(ALPHA)))
ABLATION_ARGS += $(ADAPTIVE_ARGS)

.PHONY: bench-stats

# Benchmark, not a test: false-positive rate, power and seeds used by adaptive seeding on
# synthetic scores, against Welch's t-test at the same maximum (REPS= ablations per row).
bench-stats: $(STAMP)
	$(BIN)/python -m benchmarks.sequential_stats $(ADAPTIVE_ARGS) $(if $(REPS),--reps $(call q,$(REPS)))

# --- The soak (docs/runner.md) ------------------------------------------------------------
# Benchmark, not a test: SOAK_FAULTS faults (kill -9, signals, a second command, a server outage,
# a damaged checkpoint, a rerun elsewhere) at moments drawn from SOAK_SEED, against a tiny
# ablation on SQLite and on an MLflow server it starts; the last line is the tally.
# SOAK_SEED_BATCH=2 trains the ablation's seeds as seed batches of 2 (one process per arm x task).
SOAK_FAULTS ?= 30
SOAK_SEED   ?= 0
SOAK_SEED_BATCH ?= 1
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --faults $(call q,$(SOAK_FAULTS)) --seed $(call q,$(SOAK_SEED)) \
		--seed-batch $(call q,$(SOAK_SEED_BATCH))
