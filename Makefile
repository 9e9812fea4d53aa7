# mt — the commands of the README. `make train` and `make test` set the project up on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
ARGS ?=
RUN ?= runs/tatoeba_en_fr-transformer

.PHONY: install train eval test check format tensorboard demo bench bench-scale clean

install: $(VENV)/.installed

# torch first, pinned: an unpinned torch may pull a much larger build than the machine needs
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[dev,fast,serve,align]'
	touch $@

train: install  ## prepare -> tokenize -> train -> evaluate (Hydra overrides in ARGS)
	$(BIN)/mt train $(ARGS)

eval: install  ## beam-search decode and score the test split(s) of RUN
	$(BIN)/mt eval --run $(RUN) $(ARGS)

# one worker per core (at most 4): the tests train tiny models with one thread each
test: install
	$(BIN)/python -m pytest -n auto --maxprocesses 4

check: install
	$(BIN)/ruff check mt tests scripts
	$(BIN)/ruff format --check mt tests scripts

format: install
	$(BIN)/ruff check --fix mt tests scripts
	$(BIN)/ruff format mt tests scripts

demo: install  ## a tiny model on the generated toy pair, then its alignment of the probe sentence
	$(BIN)/mt train experiment=demo $(ARGS)
	$(BIN)/mt align --run runs/demo "The black cat ate the mouse."

bench: install  ## training (and, with --run, decoding) speed of a config; appends to docs/BENCHMARKS.md
	$(BIN)/python scripts/bench.py $(if $(ARGS),$(ARGS),data=multi30k_en_de model=transformer)

bench-scale: install  ## memory and time against corpus size (synthetic 100k / 1M / 10M pairs); appends to docs/BENCHMARKS.md
	$(BIN)/python scripts/bench_scale.py $(if $(ARGS),$(ARGS),--pairs 100000 1000000 10000000) --output docs/BENCHMARKS.md

tensorboard: install
	$(BIN)/tensorboard --logdir runs

clean:
	rm -rf data/cache multirun outputs .pytest_cache
