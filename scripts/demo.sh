#!/usr/bin/env bash
# The demo behind `make demo`: a sample release walked through the local stack, each step printed
# as it happens. Exits non-zero as soon as a step does not do what it says.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CARGO_TARGET_DIR:-target}/debug
STATE=${SHIPGATE_DEMO_STATE:-.local/demo-stack}
local_() { "$BIN/shipgate-local" --state-dir "$STATE" "$@"; }
step() { printf '\n\033[1m[%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }
# checked STAGE: the stage's deploy and checks actions succeed.
checked() {
  local_ wait-action --stage "$1" --action Deploy --expect Succeeded --timeout 120
  local_ wait-action --stage "$1" --action Checks --expect Succeeded --timeout 120
}
# shifted STAGE ENVIRONMENT: traffic moves to the new version on the listener and the alias,
# and the stage's two traffic actions succeed.
shifted() {
  local_ watch-traffic --environment "$2" --expect succeeded --timeout 120
  local_ watch-traffic --environment "$2" --name lambda --expect succeeded --timeout 120
  local_ wait-action --stage "$1" --action Traffic --expect Succeeded --timeout 60
  local_ wait-action --stage "$1" --action LambdaTraffic --expect Succeeded --timeout 60
}

# approve STAGE ACTION APPROVER COMMENT: the approver opens the mailed link and presses Approve.
approve() {
  local link
  link=$(local_ approval --stage "$1" --action "$2" --link-for "$3" --intent approve)
  local_ follow "$link" --decide approve --comment "$4" >/dev/null
  echo "$3 approved ($4)"
}

cleanup() { local_ down >/dev/null 2>&1 || true; }
trap cleanup EXIT
local_ down >/dev/null 2>&1 || true

step "Starting the local stack: moto, a registry per account, the CodePipeline stand-in, template.yaml's resources (the core and its own application, orders: int → stg → prod), and an application stack for billing (application.yaml: Lambda-only, int → prod)"
local_ up --application examples/billing/application.json
set -a
# shellcheck disable=SC1091
. "$STATE/env"
set +a

step "Before shipgate: orders 1.3.0's notifier (a small Lambda function) runs in int, stg and prod, its alias live on version 1"
"$BIN/shipgate-example" --version 1.3.0 --install-previous notifier \
  --in int=arn:aws:iam::222222222222:role/shipgate-deploy \
  --in stg=arn:aws:iam::333333333333:role/shipgate-deploy \
  --in prod=arn:aws:iam::444444444444:role/shipgate-deploy

step "The integrator builds orders 1.4.0 (the ECS service and the notifier): its image goes to the source registry by digest, the release zip is written"
"$BIN/shipgate-example" --version 1.4.0 --out "$STATE/releases"

step "A broken release is dropped under incoming/: intake must reject it with every problem"
local_ drop "$STATE"/releases/orders-1.4.0-broken.zip --wait --expect rejected

step "The email the integrator received"
local_ outbox --last 1

step "The fixed release is dropped: intake must accept it and start the pipeline"
local_ drop "$STATE"/releases/orders-1.4.0.zip --wait --expect accepted

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

step "int: the release's checks (checks.json) run against the new version on the test listener (:9000), before any traffic"
local_ wait-action --stage Int --action Checks --expect Succeeded --timeout 120

step "int: a canary (Canary10Percent5Minutes, compressed: minutes become seconds): 10%, hold, 100%, bake, watching the app's alarms, on the listener and, beside it, on the notifier's alias live"
shifted Int int

step "The same link again: it worked once, and now says the approval is already decided"
if local_ follow "$LINK" --decide approve; then
  echo "a used link decided a second time" >&2
  exit 1
fi

step "Meanwhile a second application: billing's worker 2.0.0 runs in int and prod (before shipgate); its integrator builds 2.1.0 (no image: a Lambda function only)"
"$BIN/shipgate-example" --app examples/billing --version 2.0.0 --install-previous worker \
  --in int=arn:aws:iam::222222222222:role/shipgate-deploy \
  --in prod=arn:aws:iam::444444444444:role/shipgate-deploy
"$BIN/shipgate-example" --app examples/billing --version 2.1.0 --out "$STATE/releases"

step "billing 2.1.0 is dropped while orders 1.4.0 is on its way: intake routes it to billing's own pipeline, which supersedes nothing of orders'"
local_ drop "$STATE"/releases/billing-2.1.0.zip --wait --expect accepted

step "billing/int: billing's own approver is mailed (orders' approvers are not); they approve; the worker's alias moves all at once"
local_ approval --stage int --action Approve --wait 120
approve int Approve billing-lead@shipgate.local "billing int change set reviewed"
local_ wait-action --pipeline billing --stage int --action LambdaTraffic --expect Succeeded --timeout 120

step "billing: its chain goes from int straight to prod; billing's owner approves the promotion, then prod's change set; a canary on the worker's alias"
local_ approval --stage PromoteToprod --action ApprovePromotion --wait 120 >/dev/null
approve PromoteToprod ApprovePromotion billing-owner@shipgate.local "int looks right"
local_ approval --stage prod --action Approve --wait 120 >/dev/null
approve prod Approve billing-owner@shipgate.local "prod change set reviewed"
local_ wait-action --pipeline billing --stage prod --action LambdaTraffic --expect Succeeded --timeout 180

step "orders 1.4.0 waited at its own gate meanwhile"
local_ wait-action --stage Int --action LambdaTraffic --expect Succeeded --timeout 10

step "Promotion: int went well; stg's approvers are asked whether 1.4.0 may enter stg (the images to copy, by digest)"
local_ approval --stage PromoteToStg --action ApprovePromotion --wait 120
approve PromoteToStg ApprovePromotion stg-lead@shipgate.local "int canary clean"

step "The images are copied by digest from the source registry to stg's (only missing layers, digest verified)"
local_ wait-action --stage PromoteToStg --action Promote --expect Succeeded --timeout 120

step "stg: the change set in the stg account (333333333333) names the stg registry's images; the stg lead approves it"
local_ approval --stage Stg --action ApproveStg --wait 120
approve Stg ApproveStg stg-lead@shipgate.local "stg change set reviewed"

step "stg: deploy and checks"
checked Stg

step "stg: the canary starts on the listener and the alias; at 10% the app's 5xx alarm fires"
local_ watch-traffic --environment stg --until-percent 10 --timeout 120
local_ watch-traffic --environment stg --name lambda --until-percent 10 --timeout 120
local_ set-alarm --account 333333333333 --name orders-stg-5xx --state ALARM --reason "Threshold Crossed: 1 datapoint [7.0] was greater than or equal to the threshold (1.0)."

step "stg: the rollback function puts all traffic back on the previous version, listener and alias; the pipeline stops with the alarm's reason"
local_ watch-traffic --environment stg --expect rolled_back --timeout 60
local_ watch-traffic --environment stg --name lambda --expect rolled_back --timeout 60
local_ wait-action --stage Stg --action Traffic --expect Failed --timeout 60
local_ wait-action --stage Stg --action LambdaTraffic --expect Failed --timeout 60

step "The stg team's email"
local_ outbox --last 1

step "The integrator fixes the bug and builds orders 1.4.1; it is dropped and accepted"
"$BIN/shipgate-example" --version 1.4.1 --out "$STATE/releases"
local_ drop "$STATE"/releases/orders-1.4.1.zip --wait --expect accepted

step "int: approved, deployed, checked; int's traffic is on the second target group since 1.4.0, so the roles swap"
local_ approval --stage Int --action ApproveInt --wait 120 >/dev/null
approve Int ApproveInt int-lead@shipgate.local "1.4.1 fixes the 5xx"
checked Int
shifted Int int

step "Promotion to stg approved; stg approved, deployed, checked; this time the canary goes to 100% and bakes with the alarm quiet"
local_ set-alarm --account 333333333333 --name orders-stg-5xx --state OK --reason "no 5xx since 1.4.0 was rolled back"
local_ approval --stage PromoteToStg --action ApprovePromotion --wait 120 >/dev/null
approve PromoteToStg ApprovePromotion stg-lead@shipgate.local "fix verified in int"
local_ wait-action --stage PromoteToStg --action Promote --expect Succeeded --timeout 120
local_ approval --stage Stg --action ApproveStg --wait 120 >/dev/null
approve Stg ApproveStg stg-lead@shipgate.local "retest of the fix"
checked Stg
shifted Stg stg

step "Promotion to prod: the change advisory board approves; the images go from stg's registry to prod's (same digests)"
local_ approval --stage PromoteToProd --action ApprovePromotion --wait 120
approve PromoteToProd ApprovePromotion cab@shipgate.local "CAB 2026-11-26: go"
local_ wait-action --stage PromoteToProd --action Promote --expect Succeeded --timeout 120

step "prod: the change set in the prod account (444444444444); the CAB approves it"
local_ approval --stage Prod --action ApproveProd --wait 120
approve Prod ApproveProd cab@shipgate.local "CAB 2026-11-26: change set"

step "prod: deploy, checks, then traffic moves linearly (Linear10PercentEvery1Minute, compressed)"
checked Prod
shifted Prod prod

step "Releases (with each promotion's images, digests and bytes copied) and pipeline executions"
local_ status

step "Summary"
local_ summary

step "Stopping the local stack"
local_ down
trap - EXIT
pgrep -f "$STATE" >/dev/null && { echo "processes of the stack are still running" >&2; exit 1; }
step "Demo finished: two applications on one shipgate, each through its own pipeline and people (billing: int → prod, side by side with orders); for orders, one release rejected with its problems listed and emailed; one accepted, approved through the page, deployed and checked in int with a canary on the listener and the notifier's alias, promoted by digest to stg after its approval, rolled back there (both) when its alarm fired; the fix went through int, stg and prod"
