#!/usr/bin/env bash
# `make demo`: the golden path on the embedded local AWS endpoint (moto's server).
# No AWS account, no Docker. Everything it starts is stopped on exit, success or not.
#
#   local AWS -> train v1 -> publish -> promote to prod -> serve from the prod pointer
#   -> predict -> train v2 -> publish -> promote -> serving answers from v2
#   -> rollback -> serving answers from v1 again
#   -> declare prod in a ModelDeployment: the controller converges the ECS service and
#      the pointer onto v2, then back onto v1 -> what it costs -> status
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mlops-demo.XXXXXX")
export MLOPS_STATE_DIR="$WORK/state"
export MLOPS_LOG_FORMAT=console MLOPS_LOG_LEVEL=WARNING
export MLOPS_ACTOR="demo"
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
AWS_PORT=$(free_port)
SERVE_PORT=$(free_port)
SERVE_PID=""
CONTROLLER_PID=""
START=$(date +%s)

cleanup() {
  local status=$?
  for pid in $SERVE_PID $CONTROLLER_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  mlopsctl dev down --port "$AWS_PORT" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# POST the seed's request; print the prediction and the version that made it.
SEED_REQUEST='{"year":2019,"odometer":25000,"make_encoded":9,"model_encoded":42}'
predict() {
  python - "$SERVE_PORT" "$SEED_REQUEST" "${1:-}" <<'PY'
import json, sys, time
import httpx
port, body, expect = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
url = f"http://127.0.0.1:{port}/predict"
deadline = time.monotonic() + 30
while True:  # serving polls the pointer; wait for it to pick up the expected version
    r = httpx.post(url, json=body, timeout=10)
    r.raise_for_status()
    out = r.json()
    if not expect or out["model_version"] == expect or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(f"POST /predict {json.dumps(body)}")
print(f"  -> price {out['predictions'][0]:,.0f} USD  (model {out['model_version']})")
if expect and out["model_version"] != expect:
    sys.exit(f"serving still answers from {out['model_version']}, expected {expect}")
PY
}

step "1. Start the local AWS endpoint and bootstrap the base resources"
eval "$(mlopsctl dev up --port "$AWS_PORT")"

step "2. A project: the used-car price example, with synthetic data"
cp -r "$ROOT/projects/usedcar-price" "$WORK/usedcar-price"
rm -rf "$WORK/usedcar-price/artifacts" "$WORK/usedcar-price/data"
cd "$WORK/usedcar-price"
python generate_data.py --rows 20000 --seed 7 --out data/usedcars.csv

step "3. Train v1, publish it, promote it to prod"
mlopsctl train
mlopsctl publish
V1=$(mlopsctl models -q | tail -n 1)
mlopsctl promote "$V1" --env prod --reason "first release"

step "4. Serve from the prod pointer"
mlopsctl serve --env prod --port "$SERVE_PORT" --poll 1 >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
python - "$SERVE_PORT" <<'PY'
import sys, time
import httpx
url = f"http://127.0.0.1:{sys.argv[1]}/ready"
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        if httpx.get(url, timeout=2).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.3)
sys.exit("serving did not become ready within 60 s")
PY
predict "$V1"

step "5. Train v2 on fresh data, publish, promote: serving follows the pointer"
python generate_data.py --rows 30000 --seed 8 --out data/usedcars.csv
mlopsctl train
mlopsctl publish
V2=$(mlopsctl models -q | tail -n 1)
mlopsctl promote "$V2" --env prod --reason "retrained on fresh data"
predict "$V2"

step "6. Roll back prod: serving answers from v1 again"
mlopsctl rollback --env prod --reason "demo rollback"
predict "$V1"

step "7. Declare prod instead: a ModelDeployment, converged by the controller"
DEPLOYMENTS="$WORK/deployments"
mkdir -p "$DEPLOYMENTS"
mlopsctl controller run --source "$DEPLOYMENTS" >"$WORK/controller.log" 2>&1 &
CONTROLLER_PID=$!
mlopsctl deploy --env prod --version "$V2" --source "$DEPLOYMENTS" --wait --until applied
predict "$V2"
echo "(the local endpoint runs no containers, so the ECS rollout stays in progress;"
echo " on AWS, 'deploy --wait' goes on until the service is Ready)"

step "8. Roll back by declaring v1 again"
mlopsctl deploy --env prod --version "$V1" --source "$DEPLOYMENTS" --wait --until applied
predict "$V1"

step "9. What prod costs, and what 4 replicas would cost (a dry run writes nothing)"
mlopsctl cost --env prod
mlopsctl deploy --env prod --version "$V1" --replicas 4 --source "$DEPLOYMENTS" --dry-run

step "10. Status"
mlopsctl models
mlopsctl status

printf '\n\033[1mdemo finished in %ss\033[0m\n' "$(( $(date +%s) - START ))"
