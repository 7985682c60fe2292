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

test: $(STAMP)
	$(PYTHON) -m pytest -q -ra --durations=15

test-fast: $(STAMP)
	$(PYTHON) -m pytest -q -m "not slow"

# The torch-free runtime on aarch64 (Debian arm64 under qemu-user) gives x86's transcripts; writes
# benchmarks/results/arm64_qemu.json. Needs root; caches the root filesystem in .cache/ (built on the first run).
test-arm: $(STAMP)
	$(PYTHON) scripts/test_arm.py

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache
