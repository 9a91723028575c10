# Two-command Quick start: `make demo` and `make test`.
# Both create (or reuse) a local virtual environment in .venv. torch is pinned to the local
# CPU wheel (2.13.0) for this kind of machine; users on GPUs install any torch>=2.4 themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.longvid-installed
DEMO_OUT ?= demo_output
BENCH_OUT ?= bench_output
PYTEST_WORKERS ?= 2

.PHONY: demo test test-app lint format venv clean bench fuzz

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev]"
	@if $(PY) -c "import torchvision" >/dev/null 2>&1; then \
		echo "torchvision is installed in $(VENV): it breaks beside the CPU torch wheel; removing it"; \
		$(PY) -m pip uninstall -y -q torchvision; fi
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m diffusers_longvid.demo --out $(DEMO_OUT)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup tests

# Style gate (.ci/run runs it before the tests): ruff's lint rules and formatting, configured in pyproject.toml.
LINT_PATHS ?= src tests examples app.py
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# Apply ruff's fixes and formatting (what `make lint` checks).
format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

# `longvid bench` on the tiny CPU model (docs/performance.md: ours vs plain chaining, full / sparse history, T-RFlow,
# diffusion forcing, per clip; ~4 min on 2 cores), then its tables (`longvid bench-report`).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) -m diffusers_longvid.cli bench --out $(BENCH_OUT)
	$(PY) -m diffusers_longvid.cli bench-report $(BENCH_OUT)

# Property-based fuzzing (11,900 hypothesis cases) and 20 kill -9 / --resume cycles of `longvid generate`
# (docs/reliability.md); `make test` runs the same properties with 50 cases each.
fuzz: $(STAMP)
	HF_HUB_OFFLINE=1 LONGVID_FUZZ=1 LONGVID_FUZZ_KILLS=20 $(PY) -m pytest -q -n 0 --hypothesis-show-statistics \
		tests/test_fuzz.py tests/cli/test_kill_resume.py

# The app's end-to-end test in a real headless Chromium (Debian's chromium + chromium-driver; .ci/run installs
# them); skipped, saying why, where they are missing.
test-app: $(STAMP)
	HF_HUB_OFFLINE=1 LONGVID_BROWSER_TESTS=1 $(PY) -m pytest -q -n 0 tests/app/test_app_browser.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(BENCH_OUT) .pytest_cache
