# Two commands on a fresh machine: `make demo` (the main job, built-in model) and `make test`.
PYTHON ?= python3
STAMP := .setup-done

.PHONY: setup demo test test-fast test-arm clean

$(STAMP): pyproject.toml
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	dualasr demo

# Two pytest workers, one per core (most tests run one thread); the tests that share the built-in
# model's session exports run on one of them (tests/conftest.py), so those exports are built once.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PYTHON) -m pytest -q -ra --durations=15 -n $(TEST_WORKERS) --dist loadgroup

test-fast: $(STAMP)
	$(PYTHON) -m pytest -q -m "not slow"

# The torch-free runtime on aarch64 (Debian arm64 under qemu-user) gives x86's transcripts; writes
# benchmarks/results/arm64_qemu.json. Needs root; caches the root filesystem in .cache/ (built on the first run).
test-arm: $(STAMP)
	$(PYTHON) scripts/test_arm.py

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache
