# Everything a developer runs, with only Python 3.11+, pip and make installed.
#   make local   set up, then run the whole bundle on loopback (AWS on moto, a gateway, Studio recorder)
#   make test    set up, then lint and run every test (what CI runs)
#   make sms URL=http://127.0.0.1:3000    text the running stack as a customer
#   make call URL=http://127.0.0.1:3000   call the running stack over ConversationRelay's protocol
#   make demo    an SMS conversation with no server at all (in-process)
#   make configure STACK=name NUMBER=+1... [FLOW=FW...] [DRY_RUN=1]   point a Twilio number at the stack
#   make redrive STACK=name [DRY_RUN=1]   deliver dead-lettered handoffs again once the cause is fixed
#   make load    1,000 concurrent SMS webhooks from 200 customers against the local stack
#   make bench   cold starts, AWS calls, warm latency and sizes of every function (not part of make test)

PYTHON ?= python3
VENV ?= .venv
SAM_VENV ?= .venv-sam
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
ARCH ?= arm64
LAYER_ARCH := $(if $(filter x86_64,$(ARCH)),x86_64,aarch64)
# The core package and devtools, importable the way the layers make them in Lambda.
PY := PYTHONPATH=$(CURDIR)/layers/core/python:$(CURDIR) $(BIN)/python
export SAM_CLI_TELEMETRY := 0
export TAC_ANALYTICS_DISABLED := true

.PHONY: help setup local sms call demo bench load configure redrive test lint events flow build validate clean

help:
	@sed -n 's/^#   //p' Makefile

$(BIN)/.installed: requirements-dev.txt layers/dependencies/requirements.txt layers/dependencies/requirements-twilio.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The SAM CLI lives in a venv of its own: its pins would fight moto's and the product's.
$(SAM): requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

setup: $(BIN)/.installed $(SAM)

local: $(BIN)/.installed
	$(PY) -m devtools.local.stack $(if $(PORT),--port $(PORT),)

URL ?= http://127.0.0.1:3000
sms: $(BIN)/.installed
	$(PY) -m devtools.phones.sms --url $(URL) $(if $(SCRIPT),--script $(SCRIPT),)

call: $(BIN)/.installed
	$(PY) -m devtools.phones.voice --url $(URL) $(if $(SCRIPT),--script $(SCRIPT),)

demo: $(BIN)/.installed
	$(PY) -m devtools.phones.sms $(if $(SCRIPT),--script $(SCRIPT),)

configure: $(BIN)/.installed
	$(PY) -m devtools.ops.configure --stack $(STACK) --phone-number $(NUMBER) $(if $(FLOW),--voice-flow $(FLOW),) $(if $(DRY_RUN),--dry-run,)

redrive: $(BIN)/.installed
	$(PY) -m devtools.ops.redrive --stack $(STACK) $(if $(DRY_RUN),--dry-run,)

load: $(BIN)/.installed
	$(PY) -m devtools.bench.load $(LOAD_ARGS)

bench: $(BIN)/.installed
	$(PY) -m devtools.bench.run $(BENCH_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	SAM_CLI=$(abspath $(SAM)) $(BIN)/python -m pytest $(PYTEST_ARGS)

events: $(BIN)/.installed
	$(PY) -m devtools.samples.make_events

flow: $(BIN)/.installed
	$(PY) -m devtools.samples.studio_flow

validate: $(SAM)
	$(SAM) validate --lint

# PYC_PYTHON=/path/to/python3.13 when python3.13 is not on PATH: the layers then ship bytecode.
build: $(SAM)
	LAYER_ARCH=$(LAYER_ARCH) $(if $(PYC_PYTHON),PYC_PYTHON=$(PYC_PYTHON),) $(SAM) build --parameter-overrides Architecture=$(ARCH)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .hypothesis
