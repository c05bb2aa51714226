# Two commands: `make demo` and `make test`. Each creates .venv when missing and reuses it.
# Every package they install comes at the exact version in requirements/lock.txt (a pip constraints
# file); pyproject.toml keeps ranges for library users. `make lock` refreshes the lock.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
# A torch already importable by $(PYTHON) (a CUDA build on a GPU machine) is kept, because the
# venv then sees the system site-packages; the lock's torch, triton and CUDA pins are left out there.
CONSTRAINTS := $(VENV)/constraints.txt

.PHONY: demo test test-shuffled venv clean docs lock

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then \
	    echo "Using the torch already installed for $(PYTHON)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	@if $(PY) -c "import torch" 2>/dev/null && \
	    ! grep -qx "torch==$$($(PY) -c 'import torch; print(torch.__version__.split("+")[0])')" $(LOCK); then \
	  grep -v -E "^(torch|triton|nvidia-)" $(LOCK) > $(CONSTRAINTS); \
	else \
	  cp $(LOCK) $(CONSTRAINTS); \
	fi
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	@touch $(STAMP)

# Refresh the lock: resolve pyproject.toml's dependencies with the dev and docs extras afresh in a
# throw-away venv (torch $(TORCH), the CPU wheel where the index serves one) and write every
# version installed. Commit the result; tests/test_lock.py checks that it covers pyproject.toml.
TORCH ?= 2.13.0
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install -q "torch==$(TORCH)"
	build/lock-venv/bin/python -m pip install -q ".[dev,docs]"
	@mkdir -p requirements
	{ echo "# Exact versions for 'make demo', 'make test' and 'make docs' (pip constraints). Refresh: make lock"; \
	  echo "# Written by 'make lock' with $$(build/lock-venv/bin/python --version) on $$(uname -m)."; \
	  build/lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v -E "^(flowstudy|pip|setuptools|wheel)[ =@]" | sed -E "s/\+(cpu|cu[0-9]+)$$//"; \
	} > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)
	rm -rf build/lock-venv

# The main job: inspect the builtin SONAR set, run the quick architecture study (four networks,
# short training, baselines beside them) and write its report to demo-out/quick/report.html; then
# a short guided optimisation with the study's MLP as the prior (guided against prior samples, 28
# evaluations toward a held-out instruction; about 2 minutes on 2 CPU cores) reported in
# demo-out/optimize/report.html.
OPTIMIZE := --objective cosine:builtin:sonar-gsm8k-1k:val:17 --budget 28 --q 4 --n-init 12 --steps 16 --seed 0 --quiet
demo: $(STAMP)
	$(VENV)/bin/flowstudy data inspect builtin:sonar-gsm8k-1k
	$(VENV)/bin/flowstudy study studies/quick.toml --out demo-out/quick
	$(VENV)/bin/flowstudy report demo-out/quick
	RUN=$$(ls -d demo-out/quick/runs/*mlp* | head -1) && \
	  $(VENV)/bin/flowstudy optimize run $$RUN --method guided --opt n_candidates=128 $(OPTIMIZE) --out demo-out/optimize/guided && \
	  $(VENV)/bin/flowstudy optimize run $$RUN --method prior $(OPTIMIZE) --out demo-out/optimize/prior
	$(VENV)/bin/flowstudy optimize report demo-out/optimize/guided demo-out/optimize/prior --out demo-out/optimize

# The complete CPU suite, in parallel (one worker a core, at most 4), in file order.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4 -p no:randomly

# The same suite in a random order (pytest-randomly; its seed is printed, --randomly-seed=N repeats it).
test-shuffled: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4

# The documentation site in build/site, strictly (a warning fails it): every public name documented,
# the CLI reference generated from the app, the examples run at full size (a few minutes on 2 CPU
# cores; FLOWSTUDY_DOCS_EXAMPLES=small runs them at their test size), no raw Markdown left in a built
# page (docs/hooks/markup_check.py). `bash docs/screenshots.sh` then shoots every page at 1400 px.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[docs]"
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m pytest -q tests/test_docstrings.py tests/test_docs_markup.py
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info
