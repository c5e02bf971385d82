#!/usr/bin/env bash
# `make demo`: the golden path on the embedded local AWS and its data plane (moto's
# server, with ECS tasks run as local processes behind a local load balancer). No AWS
# account, no Docker. Everything it starts is stopped on exit, success or not.
#
#   local AWS -> train v1 -> publish -> deploy through the controller -> Ready
#   -> the seed's request through the load balancer -> steady load from here on
#   -> v2 (fresh data) rolls out, task by task -> Ready on v2
#   -> v3 cannot become ready (its model.onnx needs a newer onnxruntime) -> the rollout
#      fails, ECS's circuit breaker and the controller roll back to v2 (Degraded
#      RolloutFailed) -> the load's count of failed requests -> what prod costs -> status
#   -> prod captures 100% of its requests -> traffic shifted away from the training data
#      -> the drift job finds it (exit 1) and writes its report -> status: Drifted=True
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mlops-demo.XXXXXX")
export MLOPS_STATE_DIR="$WORK/state"
export MLOPS_LOG_FORMAT=console MLOPS_LOG_LEVEL=WARNING
export MLOPS_ACTOR="demo"
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
AWS_PORT=$(free_port)
CONTROLLER_PID=""
LOAD_PID=""
START=$(date +%s)

cleanup() {
  local status=$?
  for pid in $LOAD_PID $CONTROLLER_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  mlopsctl dev down --port "$AWS_PORT" >/dev/null 2>&1 || true
  if [ "$status" -eq 0 ]; then
    rm -rf "$WORK"
  else
    # What went wrong stays readable: the data plane's log and every task's output.
    echo "the demo failed; its files are kept in $WORK (logs under $WORK/state)" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
# A signal exits through the EXIT trap too (bash skips it on a fatal signal): Ctrl-C, or a
# harness that times the demo out, still stops what it started.
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# The env's load balancer URL, as `mlopsctl status` shows it.
endpoint() {
  mlopsctl status --json | python -c 'import json, sys; print({e["env"]: e for e in json.load(sys.stdin)["envs"]}["prod"]["endpoint"] or "")'
}

# POST the seed's request through the load balancer; print the prediction and its version.
SEED_REQUEST='{"year":2019,"odometer":25000,"make_encoded":9,"model_encoded":42}'
predict() {
  python - "$URL" "$SEED_REQUEST" <<'PY'
import json, sys
import httpx
url, body = sys.argv[1], json.loads(sys.argv[2])
r = httpx.post(f"{url}/predict", json=body, timeout=10)
r.raise_for_status()
out = r.json()
print(f"POST {url}/predict {json.dumps(body)}")
print(f"  -> price {out['predictions'][0]:,.0f} USD  (model {out['model_version']})")
PY
}

# `mlopsctl deploy --wait`, timed; arguments after the version go to deploy.
deploy() {
  local t0 t1 version=$1
  shift
  t0=$(date +%s.%N)
  mlopsctl deploy --env prod --version "$version" --source "$DEPLOYMENTS" --wait --timeout 240 "$@"
  t1=$(date +%s.%N)
  python -c "print(f'deploy -> Ready in {$t1 - $t0:.1f} s')"
}

step "1. Start the local AWS endpoint and data plane; bootstrap the base resources"
eval "$(mlopsctl dev up --port "$AWS_PORT")"

step "2. A project: the used-car price example, with synthetic data"
cp -r "$ROOT/projects/usedcar-price" "$WORK/usedcar-price"
rm -rf "$WORK/usedcar-price/artifacts" "$WORK/usedcar-price/data"
cd "$WORK/usedcar-price"
python generate_data.py --rows 20000 --seed 7 --out data/usedcars.csv

step "3. Train v1 and publish it"
mlopsctl train
mlopsctl publish
V1=$(mlopsctl models -q | tail -n 1)

step "4. Declare prod on v1: the controller creates the ECS service behind a load balancer"
DEPLOYMENTS="$WORK/deployments"
mkdir -p "$DEPLOYMENTS"
mlopsctl controller run --source "$DEPLOYMENTS" --metrics-port 0 >"$WORK/controller.log" 2>&1 &
CONTROLLER_PID=$!
deploy "$V1"
URL=$(endpoint)
predict

step "5. Steady load through the load balancer from now on"
python - "$URL" "$SEED_REQUEST" "$WORK/load.json" "$WORK/load.stop" >"$WORK/load.log" 2>&1 <<'PY' &
import json, os, sys, time
from collections import Counter
import httpx
url, body, out, stop = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
codes, versions = Counter(), Counter()
with httpx.Client(timeout=10) as client:
    while not os.path.exists(stop):
        try:
            r = client.post(f"{url}/predict", json=body)
            codes[str(r.status_code)] += 1
            if r.status_code == 200:
                versions[r.json()["model_version"]] += 1
        except httpx.HTTPError as exc:
            codes[type(exc).__name__] += 1
        time.sleep(0.05)
with open(out, "w") as f:
    json.dump({"codes": codes, "versions": versions}, f)
PY
LOAD_PID=$!
echo "sending the seed's request to $URL every 50 ms"

step "6. v2, trained on fresh data, rolls out task by task (ECS rolling update)"
python generate_data.py --rows 20000 --seed 8 --out data/usedcars.csv
mlopsctl train
mlopsctl publish
V2=$(mlopsctl models -q | tail -n 1)
deploy "$V2"
predict

step "7. v3 cannot become ready: its model.onnx needs a newer onnxruntime than serving has"
# v2's model as a newer ONNX exporter would write it (IR version 99): an authentic,
# publishable version that the serving image's onnxruntime cannot load.
python - artifacts artifacts-v3 <<'PY'
import json, shutil, sys
from datetime import UTC, datetime
from pathlib import Path
import onnx
from mlops_core.artifacts import MANIFEST, make_version, sha256_file
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst)
doc = json.load(open(f"{dst}/{MANIFEST}"))
model = f"{dst}/{doc['model_file']}"
proto = onnx.load(model)
proto.ir_version = 99
onnx.save(proto, model)
entry = doc["files"][doc["model_file"]]
entry["sha256"], entry["size"] = sha256_file(Path(model)), Path(model).stat().st_size
now = datetime.now(UTC)
doc["created_at"] = now.isoformat()
doc["version"] = make_version(now, entry["sha256"])
open(f"{dst}/{MANIFEST}", "w").write(json.dumps(doc, indent=2) + "\n")
PY
mlopsctl publish --artifacts artifacts-v3
V3=$(mlopsctl models -q | tail -n 1)
if mlopsctl deploy --env prod --version "$V3" --source "$DEPLOYMENTS" --wait --timeout 300; then
  echo "v3 was expected to fail its rollout" >&2
  exit 1
fi
echo "rolled back: the circuit breaker and the controller returned prod to $V2"
python - <<'PY'
import json, subprocess, sys, time
deadline = time.monotonic() + 120
while True:  # wait for ECS's rollback deployment to complete on v2
    doc = json.loads(subprocess.run(["mlopsctl", "status", "--json"], capture_output=True, text=True, check=True).stdout)
    prod = {e["env"]: e for e in doc["envs"]}["prod"]
    svc = prod["service"] or {}
    rollout = (svc.get("deployment") or {}).get("rollout_state")
    if rollout == "COMPLETED" and svc.get("version") == prod["pointer"]["version"]:
        print(f"service back on {svc['version']} ({svc['revision']}), rollout {rollout}")
        break
    if time.monotonic() > deadline:
        sys.exit("the service did not return to a completed rollout")
    time.sleep(1)
PY
predict

step "8. The load's answers during all of it"
touch "$WORK/load.stop"
wait "$LOAD_PID"
LOAD_PID=""
python - "$WORK/load.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
total = sum(doc["codes"].values())
failed = total - doc["codes"].get("200", 0)
print(f"{total} requests through the load balancer, {failed} failed")
for version, n in sorted(doc["versions"].items()):
    print(f"  {n:6d} answered by {version}")
sys.exit(1 if failed or not total else 0)
PY

step "9. What prod costs, and what 4 replicas would cost (a dry run writes nothing)"
mlopsctl cost --env prod
mlopsctl deploy --env prod --version "$V2" --replicas 4 --source "$DEPLOYMENTS" --dry-run

step "10. Status"
mlopsctl models
mlopsctl status

step "11. Watch what prod receives: capture every request, send shifted traffic, check for drift"
deploy "$V2" --capture-percent 100
URL=$(endpoint)
# v2's own training data (data/usedcars.csv), moved: cars 8 years older, with 70% more
# miles and two more cylinders, within the schema's bounds. The integer features stay
# integers (pandas makes a column with blanks float; /predict answers 422 for 8.0 where
# an integer is expected), blanks stay absent.
python - "$URL" "$V2" <<'PY'
import sys, time
from datetime import UTC, datetime, timedelta
import httpx
import pandas as pd
from mlops_core.capture import read_window, schema_for
from mlops_core.config import PlatformSettings
from mlops_core.registry import Registry
url, version = sys.argv[1], sys.argv[2]
registry = Registry(PlatformSettings.load().names())
manifest = registry.get_manifest("usedcar-price", version)
df = pd.read_csv("data/usedcars.csv").drop(columns=["price"]).head(8000)
df["year"] = (df["year"] - 8).clip(lower=1980)
df["odometer"] = (df["odometer"] * 1.7 + 20000).clip(upper=1_000_000)
df["engine_cylinders"] = (df["engine_cylinders"] + 2).clip(upper=16)
integers = [f.name for f in manifest.features if f.type == "integer"]
rows = [
    {k: int(v) if k in integers else v for k, v in rec.items() if not pd.isna(v)}
    for rec in df.to_dict(orient="records")
]
start = datetime.now(UTC) - timedelta(seconds=1)
with httpx.Client(timeout=30) as client:
    for i in range(0, len(rows), 500):
        r = client.post(f"{url}/predict", json=rows[i : i + 500])
        if r.status_code != 200:
            sys.exit(f"/predict answered {r.status_code}: {r.text[:500]}")
print(f"sent {len(rows)} shifted records to {url}/predict in requests of 500")
# Serving writes captured records in batches, off the request path, at least every minute.
schema, deadline = schema_for(manifest), time.monotonic() + 150
while True:
    window = read_window(registry.platform, schema, "prod", start, datetime.now(UTC), ["time"])
    if window.rows >= len(rows):
        break
    if time.monotonic() > deadline:
        sys.exit(f"only {window.rows} of {len(rows)} records were captured")
    time.sleep(2)
print(f"captured {window.rows} records in {window.files} files")
PY
# Exit 1 means drift found: expected here, so anything else fails the demo.
set +e
mlopsctl drift --env prod --since 1h
DRIFT_EXIT=$?
set -e
if [ "$DRIFT_EXIT" -ne 1 ]; then
  echo "mlopsctl drift was expected to find drift (exit 1), it exited $DRIFT_EXIT" >&2
  exit 1
fi
echo "mlopsctl drift exited $DRIFT_EXIT: drift found"

step "12. Status: prod's live version has Drifted (drift never rolls a model back by itself)"
mlopsctl status

step "13. Progressive delivery: prod's manifest asks for a Canary judged by analysis"
# Declared in the manifest, as a platform team would in Git: 20 % of the traffic to the
# new version for one (scaled) minute, then ECS pauses and the controller compares the
# two versions (5xx, p99 latency, and the shift between their captured predictions).
python - "$DEPLOYMENTS/usedcar-price-prod.yaml" <<'PY'
import sys
import yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path))
doc["spec"]["strategy"] = {"type": "Canary", "canary": {"percent": 20, "bakeMinutes": 1}}
doc["spec"]["analysis"] = {"minRequests": 100, "maxPredictionShift": 0.5, "maxLatencyP99Ratio": 10}
doc["spec"]["monitoring"]["captureFlushSeconds"] = 2
yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
print(yaml.safe_dump({"strategy": doc["spec"]["strategy"], "analysis": doc["spec"]["analysis"]}, sort_keys=False), end="")
PY
# Steady load again, over varied cars (v2's training data), so each version's predictions
# have a distribution to compare. From a copy: step 14 rewrites data/usedcars.csv while
# this load starts, and a half-written file would end it before its first request.
cp data/usedcars.csv "$WORK/load2.csv"
python - "$URL" "$V2" "$WORK/load2.json" "$WORK/load2.stop" "$WORK/load2.csv" >"$WORK/load2.log" 2>&1 <<'PY' &
import json, os, sys, time
from collections import Counter
import httpx
import pandas as pd
from mlops_core.config import PlatformSettings
from mlops_core.registry import Registry
url, version, out, stop, data = sys.argv[1:6]
manifest = Registry(PlatformSettings.load().names()).get_manifest("usedcar-price", version)
integers = [f.name for f in manifest.features if f.type == "integer"]
df = pd.read_csv(data).drop(columns=["price"]).head(2000)
rows = [{k: int(v) if k in integers else v for k, v in r.items() if not pd.isna(v)}
        for r in df.to_dict(orient="records")]
codes, versions, i = Counter(), Counter(), 0
with httpx.Client(timeout=10) as client:
    while not os.path.exists(stop):
        try:
            r = client.post(f"{url}/predict", json=rows[i % len(rows)])
            codes[str(r.status_code)] += 1
            if r.status_code == 200:
                versions[r.json()["model_version"]] += 1
        except httpx.HTTPError as exc:
            codes[type(exc).__name__] += 1
        i += 1
        time.sleep(0.02)
with open(out, "w") as f:
    json.dump({"codes": codes, "versions": versions}, f)
PY
LOAD_PID=$!

step "14. v4, trained on fresh data, goes out as a canary and passes its analysis"
python generate_data.py --rows 20000 --seed 9 --out data/usedcars.csv
mlopsctl train
mlopsctl publish
V4=$(mlopsctl models -q | tail -n 1)
deploy "$V4"
rollout_report() {
  python - "$DEPLOYMENTS/usedcar-price-prod.status.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["status"].get("rollout") or {}
print(f"rollout {r.get('strategy')} of {r.get('canaryVersion')} (stable {r.get('stableVersion')}): {r.get('outcome')}")
for s in r.get("steps", []):
    c, b = s["canary"], s["stable"]
    print(f"  step at {s['trafficPercent']:g}%: {s['verdict']}: new {c['requests']} requests, "
          f"5xx {c['errors']}, p99 {c.get('latencyP99Ms') or 0:.1f} ms; stable {b['requests']} "
          f"requests, p99 {b.get('latencyP99Ms') or 0:.1f} ms; prediction shift "
          f"{'n/a' if s.get('predictionShift') is None else format(s['predictionShift'], '.3f')}")
    print(f"    {s['message']}")
PY
}
rollout_report

step "15. v5 has a units bug (prices in cents): its canary fails analysis and is rolled back"
python - <<'PY'
import pandas as pd
df = pd.read_csv("data/usedcars.csv")
df["price"] = df["price"] * 100
df.to_csv("data/usedcars.csv", index=False)
PY
mlopsctl train
mlopsctl publish
V5=$(mlopsctl models -q | tail -n 1)
t0=$(date +%s.%N)
if mlopsctl deploy --env prod --version "$V5" --source "$DEPLOYMENTS" --wait --timeout 300; then
  echo "v5 was expected to fail its canary analysis" >&2
  exit 1
fi
t1=$(date +%s.%N)
python -c "print(f'canary -> rolled back by analysis in {$t1 - $t0:.1f} s')"
rollout_report
touch "$WORK/load2.stop"
wait "$LOAD_PID"
LOAD_PID=""
python - "$WORK/load2.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
total = sum(doc["codes"].values())
failed = total - doc["codes"].get("200", 0)
print(f"{total} requests through the load balancer during the canaries, {failed} failed")
for version, n in sorted(doc["versions"].items()):
    print(f"  {n:6d} answered by {version}")
sys.exit(1 if failed or not total else 0)
PY
mlopsctl status

printf '\n\033[1mdemo finished in %ss\033[0m\n' "$(( $(date +%s) - START ))"
