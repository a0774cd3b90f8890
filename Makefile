# atomsieve: `make run` runs the pipeline on the bundled example, `make test` runs the
# tests. Both first set up everything on a fresh Debian machine, idempotently: the KIM
# API and models, and LAMMPS for the elastic-constant cross-check, from Debian
# (apt-get, as root or through sudo), a .venv, and
# `pip install -e .[dev]` (redone only when pyproject.toml changes).

SHELL := /bin/bash
VENV := .venv
APT_PACKAGES := libkim-api-dev openkim-models pkg-config lammps openssh-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-fast bench setup system clean

run: setup
	dvc repro

test: setup
	pytest

test-fast: setup
	pytest -m "not heavy"

bench: setup
	python benchmarks/bench_hash.py

setup: system $(VENV)/.installed

system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf outputs .atomsieve
