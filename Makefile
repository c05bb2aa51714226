# Two commands: `make demo` and `make test`. Each creates .venv when missing and reuses it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CPU wheel served on these machines; a torch already importable by $(PYTHON) (a CUDA build
# on a GPU box) is kept, because the venv then sees the system site-packages.
TORCH_PIN := torch==2.13.0

.PHONY: demo test test-all venv clean docs

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then \
	    echo "Using the torch already installed for $(PYTHON)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

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

test: $(STAMP)
	$(PY) -m pytest -q

# The documentation site in build/site, strictly (a warning fails it): every public name documented,
# the CLI reference generated from the app, the examples run at full size (a few minutes on 2 CPU
# cores; FLOWSTUDY_DOCS_EXAMPLES=small runs them at their test size).
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[docs]"
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m pytest -q tests/test_docstrings.py
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info
