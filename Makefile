# tunebook: the front door. Every target is one line that calls the `tunebook` CLI.
# Variables: RECIPE=<name> (default: the embedded CPU recipe), OVERRIDES="<hydra overrides>",
# plus the per-target ones listed in `make help`.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
TB := $(VENV)/bin/tunebook
# The locks (scripts/env/locks.py says what each holds); setup installs one into $(VENV).
LOCK := requirements.lock
GPU_LOCK := requirements-gpu.lock
STAMP := $(VENV)/.tunebook-installed
GPU_STAMP := $(VENV)/.tunebook-gpu-installed
# make setup adds the gpu extra where nvidia-smi lists a GPU.
HAS_GPU = $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo 1)
ENV_SCRIPTS := scripts/env/setup.sh scripts/env/uv.sh

# Recipe selection shared by every target that composes a recipe.
R = $(if $(RECIPE),--recipe '$(RECIPE)') $(if $(OVERRIDES),--overrides '$(OVERRIDES)')
opt = $(if $($(1)),--$(2) '$($(1))')
flag = $(if $(filter 1 true yes,$($(1))),--$(2))

.PHONY: help setup setup-gpu setup-system lock-env lock-check-env list show validate render \
        lock lock-check diff pr-summary catalog data-check convert split new-task plan preflight \
        baseline train smoke smoke-all eval gate report review review-score merge demo sbatch \
        runs ui register sweep test test-fast lint bench bench-validate bench-data bench-plan \
        bench-train clean

help: ## list the targets (this text)
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(if $(HAS_GPU),$(GPU_STAMP),$(STAMP)) ## create .venv from the lock with uv, hash-checked (+ gpu extra on a GPU machine); idempotent

setup-gpu: $(GPU_STAMP) ## setup plus the gpu extra (DeepSpeed) from requirements-gpu.lock

setup-system: ## Debian packages the tests need: chromium, slurm-wlm, munge, shellcheck (root; idempotent)
	scripts/ci/setup-system.sh

$(STAMP): $(LOCK) pyproject.toml $(ENV_SCRIPTS)
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/env/setup.sh $(LOCK) && touch $@

$(GPU_STAMP): $(GPU_LOCK) pyproject.toml $(ENV_SCRIPTS)
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/env/setup.sh $(GPU_LOCK) && touch $@ $(STAMP)

lock-env: ## re-resolve every lock from pyproject.toml for Linux x86_64 (uv, with hashes)
	PYTHON=$(PYTHON) $(PYTHON) scripts/env/locks.py compile

lock-check-env: ## fail (exit 1) naming a lock that does not resolve for Linux x86_64 or is stale
	PYTHON=$(PYTHON) $(PYTHON) scripts/env/locks.py check

list: setup ## table of recipes: name, model, method, task, status, est. peak VRAM
	@$(TB) list

show: setup ## RECIPE's resolved config and the file that set each value
	@$(TB) show $(R)

validate: setup ## compose + strict checks: RECIPE, or every recipe when RECIPE is unset
	@$(TB) validate $(R) $(if $(RECIPE),,--all)

render: setup ## write runs/<recipe>/<run-id>/ with axolotl.yaml, resolved.yaml, manifest.json
	@$(TB) render $(R)

lock: setup ## write the resolved snapshot of every recipe to recipes/.lock/
	@$(TB) lock

lock-check: setup ## fail (exit 1) naming every recipe whose snapshot is stale
	@$(TB) lock --check

diff: setup ## resolved-config diff of RECIPE (or of every changed recipe) vs REF (default HEAD)
	@$(TB) diff $(R) $(call opt,REF,ref)

pr-summary: setup ## Markdown for a PR: recipes changed vs REF (default HEAD) [CHANGED=1: names only]
	@$(TB) pr-summary $(call opt,REF,ref) $(call flag,CHANGED,changed)

catalog: setup ## regenerate the recipe table in README.md
	@$(TB) catalog --write README.md

data-check: setup ## dataset gate for RECIPE's task, or DATA=path; JSON=report.json FIX=clean.jsonl
	@$(TB) data-check $(R) $(call opt,DATA,data) $(call opt,JSON,json) $(call opt,FIX,fix)

convert: setup ## DATA=in FROM=sharegpt|alpaca|openai|csv OUT=out.jsonl: convert to the chat format
	@$(TB) convert $(call opt,DATA,data) $(call opt,FROM,from) $(call opt,OUT,out)

split: setup ## DATA=x OUT=dir: deterministic 80/10/10 split, stratified, near-duplicates kept together
	@$(TB) split $(call opt,DATA,data) $(call opt,OUT,out) $(R)

new-task: setup ## NAME=task DATA=file [FROM= KIND= MODEL= TEXT= LABEL= FORCE=1]: your own task
	@$(TB) new-task $(call opt,NAME,name) $(call opt,DATA,data) $(call opt,FROM,from) $(call opt,KIND,kind) $(call opt,MODEL,model) $(call opt,TEXT,text) $(call opt,LABEL,label) $(call flag,FORCE,force)

plan: setup ## memory, time and cost of RECIPE on GPU=<id> [GPUS=n PRICE=usd/h MFU=0.35 JSON=plan.json]
	@$(TB) plan $(R) $(call opt,GPU,gpu) $(call opt,GPUS,gpus) $(call opt,PRICE,price) $(call opt,MFU,mfu) $(call opt,JSON,json)

preflight: setup ## before any GPU time: GPU and plan, base model, disk of RECIPE (train runs it too)
	@$(TB) preflight $(R)

baseline: setup ## evaluate the base model on RECIPE's suites (prompting only)
	@$(TB) baseline $(R)

train: setup ## render and train RECIPE with Axolotl [RESUME=last FORCE=1 DRY_RUN=1 FROM_RUN=run NNODES=...]
	@$(TB) train $(R) $(call opt,RESUME,resume) $(call flag,FORCE,force) $(call flag,DRY_RUN,dry-run) $(call opt,FROM_RUN,from-run) $(call opt,NNODES,nnodes) $(call opt,NODE_RANK,node-rank) $(call opt,MASTER_ADDR,master-addr) $(call opt,MASTER_PORT,master-port) $(call opt,GPUS_PER_NODE,gpus-per-node)

smoke: setup ## train RECIPE on its tiny CPU twin for a few steps
	@$(TB) smoke $(R)

smoke-all: setup ## smoke-train every recipe
	@$(TB) smoke --all

eval: setup ## evaluate the tuned model of RUN (dir or last) on RECIPE's suites
	@$(TB) eval $(R) $(call opt,RUN,run)

gate: setup ## paired tuned-vs-base ship decision for RUN; exit 0 ship, 1 do not ship
	@$(TB) gate $(R) $(call opt,RUN,run)

report: setup ## HTML + Markdown report of RUN
	@$(TB) report $(R) $(call opt,RUN,run)

review: setup ## blind A/B review sheet of RUN with N items
	@$(TB) review $(R) $(call opt,RUN,run) $(call opt,N,n)

review-score: setup ## score a filled review SHEET (preference rate, binomial test, kappa)
	@$(TB) review-score $(call opt,SHEET,sheet)

merge: setup ## merge RUN's LoRA adapter into its base; print the vLLM command
	@$(TB) merge $(R) $(call opt,RUN,run)

demo: setup ## the whole loop (gate, baseline, train, eval, ship gate, report) of RECIPE on CPU
	@$(TB) demo $(R)

sbatch: setup ## render a Slurm script for RECIPE [NODES= GPUS_PER_NODE= PARTITION= TIME=]
	@$(TB) sbatch $(R) $(call opt,NODES,nodes) $(call opt,GPUS_PER_NODE,gpus-per-node) $(call opt,PARTITION,partition) $(call opt,TIME,time)

runs: setup ## recent runs from MLflow: recipe, status, primary metric, gate verdict
	@$(TB) runs

ui: setup ## start the MLflow UI on localhost
	@$(TB) ui

register: setup ## register RUN's adapter in the MLflow model registry (only if the gate said ship)
	@$(TB) register $(R) $(call opt,RUN,run)

sweep: setup ## Hydra multirun over RECIPE: SWEEP="axolotl.learning_rate=1e-4,2e-4"
	@$(TB) sweep $(R) $(call opt,SWEEP,sweep)

test: setup ## the test suite, every tier (CI runs this)
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup

test-fast: setup ## tier 1 only: no training
	$(VENV)/bin/python -m pytest -n 2 -m "not smoke and not slow"

lint: setup ## ruff + yamllint + shellcheck + actionlint
	$(VENV)/bin/ruff check scripts tests && $(VENV)/bin/yamllint -s recipes eval-suites data-templates .github && $(VENV)/bin/shellcheck .ci/run scripts/env/*.sh scripts/ci/*.sh && $(VENV)/bin/actionlint -shellcheck $(VENV)/bin/shellcheck

bench: bench-validate bench-data bench-plan bench-train ## every benchmark

bench-validate: setup ## wall time to validate every recipe in one process (target < 15 s)
	@$(VENV)/bin/python scripts/bench/validate.py

bench-data: setup ## data checks on generated chat sets, 100k [ROWS=1000000] (1M: <= 60 s, <= 2 GB)
	@$(VENV)/bin/python scripts/bench/data.py $(call opt,ROWS,rows)

bench-plan: setup ## planner estimates vs published reference points
	@$(VENV)/bin/python scripts/bench/plan.py

bench-train: setup ## make train vs raw axolotl train on the same rendered config
	@$(VENV)/bin/python scripts/bench/train.py

clean: ## remove runs/ and .cache/ (keeps .venv)
	rm -rf runs .cache
