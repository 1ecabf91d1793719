#!/usr/bin/env bash
# The demo behind `make demo`: a sample release walked through the local stack, each step printed
# as it happens. Exits non-zero as soon as a step does not do what it says.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CARGO_TARGET_DIR:-target}/debug
STATE=.local/demo-stack
local_() { "$BIN/shipgate-local" --state-dir "$STATE" "$@"; }
step() { printf '\n\033[1m[%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }

cleanup() { local_ down >/dev/null 2>&1 || true; }
trap cleanup EXIT
local_ down >/dev/null 2>&1 || true

step "Starting the local stack: moto, a registry per account, the CodePipeline stand-in, template.yaml's resources"
local_ up
set -a
# shellcheck disable=SC1091
. "$STATE/env"
set +a

step "The integrator builds orders 1.4.0: its image goes to the source registry by digest, the release zip is written"
"$BIN/shipgate-example" --version 1.4.0 --out .local/demo

step "A broken release is dropped under incoming/: intake must reject it with every problem"
local_ drop .local/demo/orders-1.4.0-broken.zip --wait --expect rejected

step "The email the integrator received"
local_ outbox --last 1

step "The fixed release is dropped: intake must accept it and start the pipeline"
local_ drop .local/demo/orders-1.4.0.zip --wait --expect accepted

step "int: shipgate created the change set in the int account (222222222222) and mailed each int approver"
local_ approval --stage Int --action ApproveInt --wait 120

LINK=$(local_ approval --stage Int --action ApproveInt --link-for int-lead@shipgate.local --intent approve)
step "The int lead opens the link from the email (a GET: it shows the page and decides nothing)"
local_ follow "$LINK"

step "The int lead presses Approve on the page (the page's own form is POSTed)"
local_ follow "$LINK" --decide approve --comment "int change set reviewed"

step "The decision is recorded with the gate, and CodePipeline moved on"
local_ approval --stage Int --action ApproveInt

step "int: the deploy action executes exactly the approved change set in the int account"
local_ wait-action --stage Int --action Deploy --expect Succeeded --timeout 120

step "The same link again: it worked once, and now says the approval is already decided"
if local_ follow "$LINK" --decide approve; then
  echo "a used link decided a second time" >&2
  exit 1
fi

step "Releases and pipeline executions so far"
local_ status

step "Stopping the local stack"
local_ down
trap - EXIT
pgrep -f "$STATE" >/dev/null && { echo "processes of the stack are still running" >&2; exit 1; }
step "Demo finished: one release rejected with its problems listed and emailed; one accepted, its int change set summarised, mailed to the approvers and approved through the page"
