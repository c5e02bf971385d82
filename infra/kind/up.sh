#!/usr/bin/env bash
# The Kubernetes path on a laptop with Docker: a kind cluster running the mlops controller
# (the Helm chart, two replicas sharing one Lease) against a local AWS endpoint (moto's
# server, in the cluster), and the usedcar-price example deployed through kubectl.
#
#   infra/kind/up.sh          create or update everything (idempotent)
#   infra/kind/up.sh down     delete the cluster
#
# Needs: docker, kind, kubectl, helm, and the project installed in the current Python
# (pip install -e '.[local]'), which provides mlopsctl. See infra/kind/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/infra/kind"
CLUSTER="${KIND_CLUSTER:-mlops}"
NAMESPACE="${MLOPS_NAMESPACE:-mlops-system}"
IMAGE="${MLOPS_CONTROLLER_IMAGE:-mlops-controller:dev}"
AWS_PORT=4566  # kind-config.yaml publishes moto's NodePort here
PROJECT_DIR="$ROOT/projects/usedcar-price"
EXAMPLE="$ROOT/crds/examples/usedcar-price-prod.yaml"

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"
}

if [[ "${1:-up}" == "down" ]]; then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

need docker "https://docs.docker.com/get-docker/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "https://helm.sh/docs/intro/install/"
need mlopsctl "pip install -e '.[local]' in the repository"
docker info >/dev/null 2>&1 || die "the Docker engine is not running"

say "kind cluster '$CLUSTER'"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -

say "local AWS endpoint (moto's server) in the cluster, on 127.0.0.1:$AWS_PORT for this host"
sed "s/namespace: mlops-system/namespace: $NAMESPACE/" "$HERE/moto.yaml" | kubectl apply -f -
kubectl -n "$NAMESPACE" rollout status deployment/moto --timeout=180s
# Bootstrap the base resources (bucket, ECS cluster, ECR, VPC) the way Terraform names
# them, and point this shell at the endpoint (AWS_ENDPOINT_URL, MLOPS_SUBNETS, ...).
eval "$(MLOPS_DEV_PORT=$AWS_PORT mlopsctl dev env)"

say "controller image $IMAGE"
docker build -f "$ROOT/controller/Dockerfile" -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "CRD and the Helm chart (its crds/ install the ModelDeployment CRD)"
IFS=, read -r -a subnets <<<"$MLOPS_SUBNETS"
set_subnets=()
for i in "${!subnets[@]}"; do
  set_subnets+=(--set "platform.subnets[$i]=${subnets[$i]}")
done
helm upgrade --install mlops "$ROOT/charts/mlops-controller" \
  --namespace "$NAMESPACE" \
  --values "$HERE/values-kind.yaml" \
  --set "image.repository=${IMAGE%:*}" --set "image.tag=${IMAGE##*:}" \
  --set "platform.securityGroups[0]=$MLOPS_SECURITY_GROUPS" \
  "${set_subnets[@]}" \
  --wait --timeout 180s
# Helm installs crds/ only on first install; keep the CRD current on upgrades too.
kubectl apply -f "$ROOT/crds/modeldeployment.yaml"

say "a published model version (train + publish the usedcar-price example)"
mlopsctl train --project-dir "$PROJECT_DIR"
mlopsctl publish --project-dir "$PROJECT_DIR"
VERSION="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' \
  "$PROJECT_DIR/artifacts/manifest.json")"

say "the example ModelDeployment, pinned to $VERSION"
sed "s/version: [0-9TZ]*-[0-9a-f]*/version: $VERSION/" "$EXAMPLE" | kubectl apply -f -
kubectl wait modeldeployment/usedcar-price-prod \
  --for=jsonpath='{.status.observedGeneration}'=1 --timeout=120s
kubectl get modeldeployment usedcar-price-prod -o wide
kubectl get modeldeployment usedcar-price-prod \
  -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

cat >&2 <<MSG

Done. The controller runs in namespace $NAMESPACE; AWS is moto on 127.0.0.1:$AWS_PORT.
  kubectl describe modeldeployment usedcar-price-prod      # Events: one per action
  kubectl -n $NAMESPACE logs deploy/mlops-mlops-controller  # the active replica's log
  eval "\$(MLOPS_DEV_PORT=$AWS_PORT mlopsctl dev env)" && mlopsctl status --project-dir $PROJECT_DIR
  $0 down                                                   # delete the cluster
MSG
