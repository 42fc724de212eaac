# Set-up and the project's main commands. `make demo` and `make test` do all set-up on a fresh machine.
PY      ?= python3.11
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: install demo reproduce test test-slow mutation gpu-check gpu-wheels clean

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	# one install line, so accelerate's torch>=2.0 cannot pull another torch build
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PYTHON=$(PYTHON) bash scripts/demo.sh demo

# baseline and SSL-SaN with 3 seeds on the four test sets, and Table 4 with 3 seeds (README: "The claims over three training seeds")
reproduce: $(STAMP)
	PYTHON=$(PYTHON) bash scripts/reproduce.sh reproduce

test: $(STAMP)
	$(PYTHON) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5 treated as success)"; rc=0; fi; exit $$rc

test-slow: $(STAMP)
	$(PYTHON) -m pytest -q -m slow

# mutation testing of the metrics, their Numba kernels, losses/objective/equivariance and features/augmentation
# (README: "Mutation testing");
# run it for every change to those modules; GROUP=metrics (or kernels, losses, features) runs one group
mutation: $(STAMP)
	$(PYTHON) scripts/mutation.py $(if $(GROUP),--group $(GROUP))

# on a machine with one NVIDIA GPU and a CUDA build of torch 2.11.0 (no virtualenv: that interpreter's packages)
gpu-check:
	PYTHON=$(or $(GPU_PYTHON),python3) WHEELS=$(WHEELS) bash scripts/gpu_check.sh

# on a machine with the package registry: the wheels an offline GPU machine needs (Python 3.12), for WHEELS=wheels
gpu-wheels: $(STAMP)
	$(PYTHON) scripts/gpu_check.py --download wheels --python-version 3.12

clean:
	rm -rf $(VENV) demo
