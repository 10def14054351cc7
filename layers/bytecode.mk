# Included by every Makefile that sam build runs (layers/core, layers/dependencies, functions).
# sam build runs make with --makefile pointing at the Makefile in the source tree, so an include
# relative to it works even though make's working directory is sam's scratch copy.
#
# Lambda's code directories are read-only, so Python compiles every module it cannot find as
# bytecode again on each cold start: ship the bytecode, made by the runtime's own minor version
# (PYC_PYTHON, else python$(LAYER_PYTHON_VERSION) on PATH, else pyenv's install of it). Hash-based
# and unchecked, because the deployment zip does not keep file times.
LAYER_PYTHON_VERSION ?= 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
# pyenv's shim on PATH fails unless that version is selected, so each candidate must run.
ifeq ($(origin PYC_PYTHON),undefined)
PYC_PYTHON := $(firstword $(foreach candidate,\
	$(shell command -v python$(LAYER_PYTHON_VERSION) 2>/dev/null) \
	$(wildcard $(PYENV_ROOT)/versions/$(LAYER_PYTHON_VERSION).*/bin/python$(LAYER_PYTHON_VERSION)),\
	$(if $(shell $(candidate) -c "" >/dev/null 2>&1 && echo runs),$(candidate))))
endif
define compile_bytecode
	@if [ -z "$(PYC_PYTHON)" ]; then \
		echo "note: no python$(LAYER_PYTHON_VERSION) found (set PYC_PYTHON): $(1) ships without bytecode, so each cold start compiles it"; \
	else \
		$(PYC_PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "$(LAYER_PYTHON_VERSION)" else "PYC_PYTHON is Python " + v + ", the runtime is $(LAYER_PYTHON_VERSION)")' && \
		$(PYC_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(1)"; \
	fi
endef
