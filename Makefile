# One gate for everyone: the same targets run locally and in CI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types pytest proto bench clean browser lock image compose-test

LOCK := requirements/dev.lock

# Install exactly the locked set, every file checked against its hash, then cagnet itself with
# no dependency resolution at all: a fresh clone gets today's tools today and in a month.
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

## demo: set up and run the six-authority demo network on this machine
demo: $(STAMP)
	$(BIN)/cagnet demo

## test: lint, type-check and run the whole test suite
test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# One worker per core (pytest-xdist); a module's tests stay together in one worker, so a network a
# module builds once is built once. PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= auto
pytest: $(STAMP) browser
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadscope

## browser: Debian's chromium for the report's browser test, where apt-get can install it (root);
## elsewhere that test skips and says why. Never fails the build.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser test"; \
		(apt-get install -y -q chromium >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
		echo "could not install chromium: the browser test will skip"; \
	fi

## proto: regenerate shared/pb from proto/ (commit the result)
proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

## bench: the joint-query benchmark (prints a table and the ratio to the floor)
bench: $(STAMP)
	$(BIN)/python bench/joint_query.py

## lock: bring requirements/*.lock in line with pyproject.toml, keeping every existing pin
## (`make lock LOCK_FLAGS=--upgrade` moves everything to the newest); commit both files
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet pip-tools==7.7.0
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= .lock-venv/bin/pip-compile --quiet $(LOCK_FLAGS) --extra dev \
		--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements/dev.lock pyproject.toml
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= .lock-venv/bin/pip-compile --quiet \
		--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
		--constraint requirements/dev.lock --output-file requirements/runtime.lock pyproject.toml
	rm -rf .lock-venv

## image: the cagnet and cagnet-postgres images, offline: a local Debian base made with mmdebstrap
## (CAGNET_BASE_IMAGE, default cagnet-base:bookworm) and a hash-checked wheelhouse (docs/deploy.md)
image: $(STAMP)
	scripts/compose.sh images

## compose-test: build the images, run docker-compose.yml (six nodes, each with its own PostgreSQL,
## and the coordinator), check the chair's joint query is verified and answered by all six, tear
## down. Needs a Docker engine, or root to install and start Debian's. Not part of `make test`.
compose-test: $(STAMP)
	scripts/compose.sh test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info build deploy/wheels/*.whl
