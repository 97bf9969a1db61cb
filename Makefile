# The front door: `make demo` and `make test` are the two commands of the README.
VENV ?= .venv
PY := $(VENV)/bin/python
# Here (no GPU) torch comes from the local CPU wheel, pinned; where nvidia-smi exists, pip picks the
# CUDA build, and a torch already in the venv is never replaced.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo demo-fast test test-slow test-browser bench lint format clean constraints docs gpu-check

setup: $(VENV)/.installed

# constraints.txt: the versions the suite last passed with, so a new clone installs what was tested.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,deepspeed,wandb]"
	# DeepSpeed's CPU shared-memory collective is a C++ op built on first use (~30 s): built here, once
	# per clone, into the folder the tests' launches use, as pip builds any native extension.
	TORCH_EXTENSIONS_DIR=$(CURDIR)/.cache/torch_extensions $(PY) -c "from deepspeed.accelerator import get_accelerator as a; b = a().create_op_builder('ShareMemCommBuilder'); b and b.load()" >/dev/null 2>&1 || true
	touch $@

# After upgrading dependencies in the venv and a green `make test`: record their versions.
constraints: setup
	{ sed -n '1,3p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^torch=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

demo: setup
	$(VENV)/bin/ttc demo --config configs/demo.yaml

demo-fast: setup
	$(VENV)/bin/ttc demo --config configs/demo.yaml --fast true --output_dir runs/demo-fast

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# `ttc view`'s page in headless Chromium (Debian's: apt-get install chromium chromium-driver), driven by
# Selenium (the dev extra); builds `ttc demo --fast` first (1-2 minutes). Skipped, saying so, without Chromium.
test-browser: setup
	$(PY) -m pytest -q -m browser

bench: setup
	test -d .bench_deps/trl113/trl || $(PY) -m pip install -q --no-deps --target .bench_deps/trl113 trl==1.13.0
	$(PY) -m pytest -q -m slow
	@for b in bench/*.py; do [ -f "$$b" ] && $(PY) "$$b"; done; true

# First on a new GPU machine (5-8 minutes): vLLM against transformers, seeded sampling, the PRM on CUDA, vLLM
# searches, ZeRO-2 LoRA training; one JSON in runs/gpu_check.json. Without CUDA: one line saying so, exit 0.
gpu-check: setup
	@if $(PY) -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then \
		$(PY) -c "import vllm" 2>/dev/null || $(PY) -m pip install -q -e ".[vllm]"; fi
	$(PY) bench/gpu_check.py --output runs/gpu_check.json

# The docs site, built with --strict (a broken link, a missing page or a docstring warning fails) into
# SITE_DIR (default: a temporary folder, so nothing lands in the repo; `make docs SITE_DIR=site` keeps it).
docs: $(VENV)/.docs-installed
	$(VENV)/bin/mkdocs build --strict --site-dir $${SITE_DIR:-$$(mktemp -d)}

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e ".[docs]"
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf runs .pytest_cache .ruff_cache
