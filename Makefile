# selfhost.dify developer entry points. Everything runs from the project venv (.venv),
# which `make venv` creates from requirements-dev.txt (cached per lock-file hash).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LAYOUT ?= single
DEBIAN ?= 13
# Upstream Dify source snapshots (dify-<release>-<commit>.tar.gz), from which the api image is
# built where no registry serves Dify's images; a checkout next to ../shared/upstream uses it.
DIFY_SOURCE_DIR ?= $(or $(SELFHOST_DIFY_SOURCE_DIR),$(wildcard $(CURDIR)/../shared/upstream))
export SELFHOST_DIFY_SOURCE_DIR := $(if $(DIFY_SOURCE_DIR),$(abspath $(DIFY_SOURCE_DIR)),)
# Grafana's Loki and Promtail release zips for the logging scenario and the labs.
LOGGING_ARTIFACT_DIR ?= $(or $(SELFHOST_LOGGING_ARTIFACT_DIR),$(wildcard $(CURDIR)/../shared/artifacts))
export SELFHOST_LOGGING_ARTIFACT_DIR := $(if $(LOGGING_ARTIFACT_DIR),$(abspath $(LOGGING_ARTIFACT_DIR)),)

.PHONY: help venv engine images lab lab-converge lab-destroy test lint sanity unit molecule lock bench-postgresql bench-sse bench-rerun

help:
	@echo "make lab            bring up the lab (LAYOUT=single|three, DEBIAN=13|12, DIFY_SOURCE_DIR=dir of Dify source tarballs) and converge site.yml"
	@echo "make lab-destroy    remove the lab containers, network and volumes"
	@echo "make test           run every test (what CI runs)"
	@echo "make lint | sanity | unit | molecule SCENARIO=base"
	@echo "make bench-postgresql   pgbench TPS of the tuned PostgreSQL vs distro defaults (a ratio)"
	@echo "make bench-sse      a Dify workflow streamed: first SSE event through the lab's edge vs its api (ARGS=\"--name test3\")"
	@echo "make bench-rerun    no-op rerun of site.yml vs the first converge on fresh labs (LAYOUT=single|three|both, ARGS=--keep)"

venv:
	@scripts/venv.sh

engine:
	@scripts/docker-engine.sh start

images: engine
	@scripts/build-images.sh
	@scripts/build-dify-double.sh

lab: venv images
	$(PY) scripts/lab.py up --layout $(LAYOUT) --debian $(DEBIAN)

lab-converge: venv
	$(PY) scripts/lab.py converge

lab-destroy:
	@if [ -x $(PY) ]; then $(PY) scripts/lab.py destroy; else python3 scripts/lab.py destroy; fi

test:
	@scripts/test.sh

lint: venv
	@scripts/test.sh lint

sanity: venv
	@scripts/test.sh sanity

unit: venv
	@scripts/test.sh unit

molecule: venv images
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" molecule test -s $(SCENARIO)

bench-postgresql: venv images
	$(PY) scripts/bench/pgbench_tuning.py

bench-sse: venv
	$(PY) scripts/bench/sse_workflow.py $(ARGS)

# LAYOUT defaults to single for `make lab`; the benchmark runs both unless given one.
bench-rerun: venv images
	$(PY) scripts/bench/rerun.py --layout $(if $(filter command line,$(origin LAYOUT)),$(LAYOUT),both) $(ARGS)

lock:
	python3 -m venv /tmp/selfhost-lock && /tmp/selfhost-lock/bin/pip install -q -r requirements-dev.in \
	  && { echo "# Generated from requirements-dev.in by 'make lock'. Do not edit by hand."; \
	       /tmp/selfhost-lock/bin/pip freeze | grep -v '^-e'; } > requirements-dev.txt && rm -rf /tmp/selfhost-lock
