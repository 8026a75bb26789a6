# The two commands of the README. Each runs the idempotent install script first, so a fresh
# machine needs nothing else.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install matrix-install demo test check bench conformance-full kernel-matrix e2e clean image-install image image-test

install:
	bash scripts/install.sh

demo: install
	$(BIN)/socksplice demo

check: install
	$(BIN)/ruff check src tests charts
	$(BIN)/ruff format --check src tests charts
	$(BIN)/mypy
	$(BIN)/lint-imports

matrix-install:
	bash scripts/kernel-matrix-install.sh

test: check matrix-install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

kernel-matrix: install matrix-install
	$(BIN)/socksplice kernel-matrix --kernels 6.1,6.12,running --markdown docs/kernels.md

conformance-full: install
	$(BIN)/socksplice conformance --full --markdown docs/conformance.md

bench: install
	$(BIN)/socksplice bench --out docs/benchmarks

e2e: install
	$(BIN)/python -m pytest tests/e2e --with-e2e $(PYTEST_ARGS)

# The container image (podman from Debian, or docker): opt-in, not part of `test` (README, "Image").
image-install:
	bash scripts/image-install.sh

image: image-install
	bash scripts/image-build.sh

image-test: install image
	bash scripts/image-test.sh

clean:
	rm -rf $(VENV) loadgen/bin
