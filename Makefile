# shipgate — the two commands of the README are `make demo` and `make test`.
# Each installs what it needs (Debian packages, the project venv, the cargo build) and skips
# what is already there.

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

VENV        := .venv
STAMP_DIR   := .local/stamps
APT_PACKAGES := docker-registry skopeo chromium chromium-driver
CARGO       ?= cargo

.PHONY: demo test setup apt venv build lint fmt clippy clean-local help bench-intake

help:
	@echo "make demo   walk a sample release through the local stack"
	@echo "make test   run every test (installs what is missing first)"

## Debian packages: installed only when one is missing.
apt:
	@missing=""
	for p in $(APT_PACKAGES); do
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"
	done
	if [ -n "$$missing" ]; then
	  echo "==> installing Debian packages:$$missing"
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo
	  $$SUDO apt-get update -qq
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null
	else
	  echo "==> Debian packages present ($(APT_PACKAGES))"
	fi

## The project venv with the pinned local-stack tools; reinstalled only when requirements change.
venv: $(VENV)/.installed

$(VENV)/.installed: requirements-local.txt
	@echo "==> creating $(VENV) with $$(grep -v '^#' requirements-local.txt | xargs)"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-local.txt
	touch $@

setup: apt venv

build:
	$(CARGO) build --workspace --all-targets

test: setup
	$(CARGO) test --workspace --all-targets --no-fail-fast

demo: setup
	$(CARGO) build -p shipgate-local -p shipgate-example
	./scripts/demo.sh

## Benchmarks (print figures; not part of make test).
bench-intake: setup
	$(CARGO) build --release -p shipgate-local -p shipgate-tests --bin shipgate-local --bin bench-intake
	./target/release/bench-intake

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: fmt clippy

clean-local:
	rm -rf .local
