# shipgate — the two commands of the README are `make demo` and `make test`.
# Each installs what it needs (Debian packages, the project venv, the cargo build) and skips
# what is already there.

SHELL := /bin/bash
# A fresh build's incremental caches are gigabytes that no fresh run reads back, and CI builds
# from nothing on a small disk: off unless the caller turns them on (CARGO_INCREMENTAL=1).
export CARGO_INCREMENTAL ?= 0
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

## Style first (cheap, and a failure says so before the long run), then the templates, then every
## test.
test: setup lint lint-templates
	$(CARGO) test --workspace --all-targets --no-fail-fast

demo: setup
	$(CARGO) build -p shipgate-local -p shipgate-example
	./scripts/demo.sh

## Lambda packages: every function (functions/<bin>, package shipgate-<bin>) cross-compiled for
## arm64 by cargo-lambda, with zig from the `ziglang` wheel (both pinned in
## requirements-package.txt, installed into the venv only when missing or changed), into
## target/lambda/<bin>/bootstrap (under $CARGO_TARGET_DIR if set), zipped as Lambda takes it.
## Prints each zip's size; a zip over the 4 MiB budget (issue 7) fails. PACKAGE_FLAGS go to
## `cargo lambda build` (`--timings`: where the build's time goes). Not in `make test` yet.
FUNCTION_BINS   := $(notdir $(patsubst %/Cargo.toml,%,$(wildcard functions/*/Cargo.toml)))
PACKAGE_TARGET  := aarch64-unknown-linux-gnu
ZIP_LIMIT_BYTES := 4194304
PACKAGE_FLAGS   ?=

.PHONY: package package-tools bench-coldstart
package-tools: $(VENV)/.package-installed

$(VENV)/.package-installed: requirements-package.txt | $(VENV)/.installed
	@echo "==> installing $$(grep -v '^#' requirements-package.txt | xargs) into $(VENV)"
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-package.txt
	touch $@

package: package-tools
	@rustup target list --installed | grep -qx $(PACKAGE_TARGET) || rustup target add $(PACKAGE_TARGET)
	start=$$(date +%s)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CARGO) lambda build --release --arm64 $(PACKAGE_FLAGS) $(addprefix -p shipgate-,$(FUNCTION_BINS))
	echo "==> built $(words $(FUNCTION_BINS)) functions for arm64 in $$(( $$(date +%s) - start ))s"
	over=""
	for bin in $(FUNCTION_BINS); do
	  dir=$${CARGO_TARGET_DIR:-target}/lambda/$$bin
	  rm -f $$dir/bootstrap.zip
	  $(VENV)/bin/python -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED, compresslevel=9); z.write(sys.argv[1], "bootstrap"); z.close()' $$dir/bootstrap $$dir/bootstrap.zip
	  size=$$(stat -c %s $$dir/bootstrap.zip)
	  awk -v b=$$bin -v s=$$size -v f=$$dir/bootstrap.zip 'BEGIN { printf "    %-14s %6.2f MiB  %s\n", b, s / 1048576, f }'
	  [ $$size -le $(ZIP_LIMIT_BYTES) ] || over="$$over $$bin"
	done
	if [ -n "$$over" ]; then echo "==> over the 4 MiB zip budget:$$over"; exit 1; fi

## Benchmarks (print figures; not part of make test).
## Cold starts of the functions' release binaries (host architecture) against a Lambda Runtime
## API emulator and the local stack; the bench itself is a dev build (it only times children).
## Every function of functions/ (FUNCTION_BINS, the same selection as `make package`, so cargo
## unifies the same features). Run `make package` first to see the arm64 zip sizes in its table.
bench-coldstart: setup
	$(CARGO) build --release $(addprefix -p shipgate-,$(FUNCTION_BINS))
	$(CARGO) build -p shipgate-tests --bin bench-coldstart --features shipgate-tests/bench
	SHIPGATE_BENCH_BIN_DIR=$${CARGO_TARGET_DIR:-target}/release $${CARGO_TARGET_DIR:-target}/debug/bench-coldstart

bench-intake: setup
	$(CARGO) build --release -p shipgate-local -p shipgate-tests --bin shipgate-local --bin bench-intake --features shipgate-tests/bench
	./target/release/bench-intake

.PHONY: bench-archive
## Release validation's verdict time on the largest archives the limits allow (every entry
## decompressed and checked), from local disk on one thread: the CPU cost Lambda scales with
## memory. Library only, so the release build does not compile the functions.
bench-archive:
	$(CARGO) run --release -p shipgate --example bench-archive

.PHONY: bench-apps
## One release's cost as applications grow (issue 17): 1, 10 and 50 application stacks of four
## environments each on the local stack; intake's verdict time, one cold lookup, and intake's AWS
## calls per release. A dev build with `--workspace` (the features `make test` builds with, so
## nothing is compiled again): it measures calls and the local stack, not compiled code.
bench-apps: setup
	$(CARGO) build --workspace --bin bench-apps --features shipgate-tests/bench
	$${CARGO_TARGET_DIR:-target}/debug/bench-apps

.PHONY: bench-promote
bench-promote: setup
	$(CARGO) build --release -p shipgate-tests --bin bench-promote --features shipgate-tests/bench
	./target/release/bench-promote

.PHONY: bench-rollback
bench-rollback: setup
	$(CARGO) build --release -p shipgate-tests --bin bench-rollback --features shipgate-tests/bench
	./target/release/bench-rollback

## Template linters (issue 7), on template.yaml, environment.yaml and application.yaml:
## cfn-lint, `sam validate --lint` and checkov. Each venv is made, from its pinned requirements,
## only when missing or changed: aws-sam-cli and cfn-lint in $(LINT_VENV), checkov in
## $(CHECKOV_VENV) (its boto3 pin clashes with aws-sam-cli's). All three run offline: `sam
## validate --lint` needs a region and no credentials (any region: it names none in the result);
## checkov downloads nothing with --skip-download. A checkov finding is fixed or skipped in the
## resource's Metadata with a reason.
LINT_VENV      := .venv-lint
CHECKOV_VENV   := .venv-checkov
LINT_TEMPLATES := template.yaml environment.yaml application.yaml

.PHONY: lint-templates lint-tools
lint-tools: $(LINT_VENV)/.installed $(CHECKOV_VENV)/.installed

$(LINT_VENV)/.installed: requirements-lint.txt
	@echo "==> creating $(LINT_VENV) with $$(grep -v '^#' requirements-lint.txt | xargs)"
	python3 -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-lint.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@echo "==> creating $(CHECKOV_VENV) with $$(grep -v '^#' requirements-checkov.txt | xargs)"
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-checkov.txt
	touch $@

lint-templates: lint-tools
	@start=$$(date +%s)
	echo "==> cfn-lint $(LINT_TEMPLATES)"
	$(LINT_VENV)/bin/cfn-lint $(LINT_TEMPLATES)
	for template in $(LINT_TEMPLATES); do
	  echo "==> sam validate --lint -t $$template"
	  env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
	    SAM_CLI_TELEMETRY=0 $(LINT_VENV)/bin/sam validate --lint --region eu-west-1 -t $$template
	done
	echo "==> checkov $(LINT_TEMPLATES)"
	$(CHECKOV_VENV)/bin/checkov $(addprefix -f ,$(LINT_TEMPLATES)) --framework cloudformation \
	  --skip-download --compact --quiet
	echo "==> templates linted in $$(( $$(date +%s) - start ))s"

## IAM conformance alone (also in `make test`): every AWS call the functions make in the
## end-to-end stories, as the local stack records them (the stories are told first when this code
## has no recording kept under the target dir), and those listed by hand in local/iam/calls.yaml,
## evaluated against the roles and bucket policies of template.yaml and environment.yaml, as AWS
## would (docs/local-stack.md, "The call recorder"). `--workspace`, as `make test` builds: the
## same features, so after `make test` nothing is compiled again.
.PHONY: iam-check
iam-check: setup
	$(CARGO) test --workspace --test iam_conformance
	$(CARGO) test --workspace --test stories -- end_to_end::iam_conformance:: --nocapture

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

lint: fmt clippy

clean-local:
	rm -rf .local
