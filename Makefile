# Two commands on a fresh machine: `make demo` (the main job, built-in model) and `make test`.
PYTHON ?= python3
STAMP := .setup-done

.PHONY: setup demo test test-fast clean

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

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache
