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

.PHONY: install test lint format train ablation report ui clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
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

# MLflow's UI on the same store the ablation writes to.
ui: $(STAMP)
	@uri="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"; \
	echo "MLflow UI for $$uri at http://127.0.0.1:$(PORT) (Ctrl-C to stop)"; \
	$(BIN)/mlflow ui --backend-store-uri "$$uri" --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
