# Everything a developer runs, with only Python 3.11+, pip and make installed. `make help` prints this list.
#
#   make local [PORT=3000] [JSON=1] [FAULTS=1]   set up, then run the whole bundle on loopback (AWS on moto, gateway,
#                                            Studio recorder); FAULTS=1 throttles, fails and kills some calls on purpose
#   make test [PYTEST_ARGS=...]              set up, then lint and run every test (what CI runs)
#
# Play the customer against `make local` (from a second terminal):
#   make sms [CUSTOMER=+1...|last] [SCRIPT=file] [URL=...]   text the running stack; /release inside ends a hold
#   make call [CALLER=+1...|last] [SCRIPT=file] [URL=...]    call it over ConversationRelay's protocol
#   make release CUSTOMER=+1...|last [URL=...]               the human side is done: the agent answers that customer again
#   make demo [SCRIPT=file] [LOGS=1|JSON=1]  an SMS conversation with no server at all (in-process); LOGS=1 shows every log line
#   make invoke EVENT=events/x.json [FUNCTION=LogicalId] [JSON=1]   one function, one sample event, on moto: no Docker
#
# Operate a deployed stack (your AWS credentials; AWS_REGION or AWS_DEFAULT_REGION):
#   make configure STACK=name NUMBER=+1... [FLOW=FW...] [DRY_RUN=1]   point a Twilio number at the stack
#   make redrive STACK=name [DRY_RUN=1]      deliver dead-lettered handoffs again once the cause is fixed
#
# Build and check:
#   make build [ARCH=arm64|x86_64] [PYC_PYTHON=python3.13]   sam build, no Docker
#   make validate                            sam validate --lint
#   make lint                                ruff check and ruff format --check
#   make events                              regenerate the signed sample events in events/
#   make flow [FLOW_ARGS=...]                regenerate studio/handoff-flow.json; with FLOW_ARGS="--voice-url ... --workflow WW..." print yours
#   make load [LOAD_ARGS=...]                1,000 concurrent SMS webhooks from 200 customers against a local stack of its own
#   make bench [BENCH_ARGS=...]              cold starts, AWS calls, warm latency and sizes (not part of make test)
#   make setup                               only create .venv and .venv-sam
#   make clean                               remove build and cache directories
#   make help                                this list
#
# Any command: DEBUG=1 shows the traceback behind an error message.

PYTHON ?= python3
VENV ?= .venv
SAM_VENV ?= .venv-sam
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
ARCH ?= arm64
LAYER_ARCH := $(if $(filter x86_64,$(ARCH)),x86_64,aarch64)
# Refused before anything is set up or built: any other value would build arm64 layers under its name.
ifneq ($(filter build,$(MAKECMDGOALS)),)
ifneq ($(ARCH),$(filter arm64 x86_64,$(firstword $(ARCH))))
$(error make build: ARCH must be arm64 or x86_64 (got '$(ARCH)'); make build ARCH=x86_64 for Intel)
endif
endif
# The core package and devtools, importable the way the layers make them in Lambda.
PY := PYTHONPATH=$(CURDIR)/layers/core/python:$(CURDIR) $(BIN)/python
# A person waiting for the first setup sees pip's progress; CI logs stay short.
PIP := -m pip install --disable-pip-version-check $(if $(CI),--quiet --progress-bar off,)
export SAM_CLI_TELEMETRY := 0
export TAC_ANALYTICS_DISABLED := true

.PHONY: help setup local sms call release demo invoke configure redrive load bench test lint events flow build validate clean

help:
	@sed -n '1,/^# Any/{s/^# \{0,1\}//;p;}' Makefile

$(BIN)/.installed: requirements-dev.txt layers/dependencies/requirements.txt layers/dependencies/requirements-twilio.txt
	@echo "Setting up $(VENV) (the first time only; a few minutes)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP) --upgrade pip
	$(BIN)/python $(PIP) -r requirements-dev.txt
	touch $@

# The SAM CLI lives in a venv of its own: its pins would fight moto's and the product's.
$(SAM): requirements-sam.txt
	@echo "Setting up $(SAM_VENV) for the SAM CLI (the first time only)..."
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python $(PIP) -r requirements-sam.txt
	touch $@

setup: $(BIN)/.installed $(SAM)

local: $(BIN)/.installed
	$(PY) -m devtools.local.stack $(if $(PORT),--port $(PORT),) $(if $(JSON),--json,) $(if $(FAULTS),--faults,)

# With no URL the phones find the running `make local` (it leaves its address in .local-stack/).
STACK_URL = $(if $(URL),--url $(URL),--local)

sms: $(BIN)/.installed
	$(PY) -m devtools.phones.sms $(STACK_URL) $(if $(CUSTOMER),--customer $(CUSTOMER),) $(if $(SCRIPT),--script $(SCRIPT),)

call: $(BIN)/.installed
	$(PY) -m devtools.phones.voice $(STACK_URL) $(if $(CALLER),--caller $(CALLER),) $(if $(SCRIPT),--script $(SCRIPT),)

release: $(BIN)/.installed
	$(PY) -m devtools.phones.release $(if $(URL),--url $(URL),) $(if $(CUSTOMER),--customer $(CUSTOMER),)

demo: $(BIN)/.installed
	$(PY) -m devtools.phones.sms $(if $(SCRIPT),--script $(SCRIPT),) $(if $(LOGS),--logs,) $(if $(JSON),--json,)

invoke: $(BIN)/.installed
	$(PY) -m devtools.local.invoke $(if $(FUNCTION),--function $(FUNCTION),) $(foreach event,$(EVENT),--event $(event)) $(if $(JSON),--json,)

configure: $(BIN)/.installed
	$(PY) -m devtools.ops.configure $(if $(STACK),--stack $(STACK),) $(if $(NUMBER),--phone-number $(NUMBER),) $(if $(FLOW),--voice-flow $(FLOW),) $(if $(DRY_RUN),--dry-run,)

redrive: $(BIN)/.installed
	$(PY) -m devtools.ops.redrive $(if $(STACK),--stack $(STACK),) $(if $(DRY_RUN),--dry-run,)

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
	$(PY) -m devtools.samples.studio_flow $(FLOW_ARGS)

validate: $(SAM)
	$(SAM) validate --lint

# PYC_PYTHON=/path/to/python3.13 when python3.13 is not on PATH: the layers then ship bytecode.
build: $(SAM)
	LAYER_ARCH=$(LAYER_ARCH) $(if $(PYC_PYTHON),PYC_PYTHON=$(PYC_PYTHON),) $(SAM) build --parameter-overrides Architecture=$(ARCH)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .hypothesis
