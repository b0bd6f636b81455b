#!/usr/bin/env bash
# Install the CRDs, run the operator (built from this checkout) in the background
# against $KUBECONFIG, wait until it is ready, run "$@", and always stop the operator.
#
#   e2e/with-operator.sh cargo test -p datajob-e2e --features e2e --test e2e -- shared::datajob::
#
# Settings for the run come from DATAJOB_* variables (see `datajob-operator --help`);
# the operator's log goes to $DATAJOB_OPERATOR_LOG (default target/e2e-operator.log).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT"
: "${KUBECONFIG:?set KUBECONFIG (eval \$(bash e2e/cluster.sh env))}"
KUBECTL=${KUBECTL:-kubectl}
LOG=${DATAJOB_OPERATOR_LOG:-$ROOT/target/e2e-operator.log}
ADMIN=${DATAJOB_ADMIN_ADDR:-127.0.0.1:8080}
export DATAJOB_ADMIN_ADDR=$ADMIN
export DATAJOB_WEBHOOK_ADDR=${DATAJOB_WEBHOOK_ADDR:-127.0.0.1:9443}
export DATAJOB_WEBHOOK_URL=${DATAJOB_WEBHOOK_URL:-https://$DATAJOB_WEBHOOK_ADDR}
export POD_NAMESPACE=${POD_NAMESPACE:-datajob-system}
export RUST_LOG=${RUST_LOG:-info,kube=warn}
# The tests shorten the watchdog's grace periods instead of sleeping for minutes.
export DATAJOB_IMAGE_PULL_GRACE=${DATAJOB_IMAGE_PULL_GRACE:-5s}
# Long enough that a Secret created after a real kubelet reported it missing is still in
# time (the kubelet retries a container it could not configure after ~10 s).
export DATAJOB_CONFIG_GRACE=${DATAJOB_CONFIG_GRACE:-25s}
export DATAJOB_UNSCHEDULABLE_GRACE=${DATAJOB_UNSCHEDULABLE_GRACE:-60s}
export DATAJOB_PVC_GRACE=${DATAJOB_PVC_GRACE:-5s}
export DATAJOB_CLEANUP_INTERVAL=${DATAJOB_CLEANUP_INTERVAL:-2s}
# The preflight suite looks images up in the cluster's registry and in listeners of its
# own, all on 127.0.0.1: the operator may connect there only when it is named.
export DATAJOB_PREFLIGHT_REGISTRIES="${DATAJOB_PREFLIGHT_REGISTRIES:-127.0.0.1:*}"

# The operator, and the plugin some suites run.
cargo build --bins
"$KUBECTL" apply --server-side --force-conflicts -f crds/ >/dev/null
"$KUBECTL" create namespace "$POD_NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" wait --for condition=established --timeout=30s crd/datajobs.datajob.dev >/dev/null

# The operator runs as the Helm chart's ServiceAccount, with exactly the chart's RBAC
# (e2e/chart-identity.sh), unless DATAJOB_OPERATOR_KUBECONFIG names another identity.
# The tests themselves keep the admin KUBECONFIG.
if [ -z "${DATAJOB_OPERATOR_KUBECONFIG:-}" ]; then
  DATAJOB_OPERATOR_KUBECONFIG=$(bash "$HERE/chart-identity.sh" | tail -n 1)
fi
export DATAJOB_OPERATOR_KUBECONFIG
echo "with-operator.sh: the operator's identity: $DATAJOB_OPERATOR_KUBECONFIG" >&2

# Outputs on volumes are staged and published by the operator's own image (`make image`,
# which `make test` runs first): push it to the cluster's registry, where the real node
# pulls it, and tell the operator (DATAJOB_PUBLISHER_IMAGE, unless set already).
IMAGE_TAR=$ROOT/target/image/datajob-operator.tar
CLUSTER_ENV=${DATAJOB_CLUSTER_DIR:-$HOME/.cache/datajob/cluster}/cluster.env
REGISTRY=$(sed -n 's/^REGISTRY=//p' "$CLUSTER_ENV" 2>/dev/null | tr -d '"' | head -n 1)
# A kwok-only cluster (REAL_NODE=0) has no registry: nothing pulls the image there.
if [ "$(sed -n 's/^REAL_NODE=//p' "$CLUSTER_ENV" 2>/dev/null | head -n 1)" != 1 ]; then
  REGISTRY=
fi
if [ -z "${DATAJOB_PUBLISHER_IMAGE:-}" ] && [ -f "$IMAGE_TAR" ] && [ -n "$REGISTRY" ]; then
  CRANE="$(bash "$HERE/tools.sh" | tail -n 1)/crane"
  LAYOUT=$(mktemp -d)
  tar -xf "$IMAGE_TAR" -C "$LAYOUT"
  DATAJOB_PUBLISHER_IMAGE="$REGISTRY/datajob/datajob-operator:e2e-$(sha256sum "$IMAGE_TAR" | cut -c1-12)"
  "$CRANE" push --insecure "$LAYOUT" "$DATAJOB_PUBLISHER_IMAGE" >/dev/null 2>"$LAYOUT.log" || { cat "$LAYOUT.log" >&2; exit 1; }
  rm -f "$LAYOUT.log"
  rm -rf "$LAYOUT"
  export DATAJOB_PUBLISHER_IMAGE
  echo "with-operator.sh: publisher image $DATAJOB_PUBLISHER_IMAGE" >&2
fi

mkdir -p "$(dirname "$LOG")"
KUBECONFIG=$DATAJOB_OPERATOR_KUBECONFIG target/debug/datajob-operator >"$LOG" 2>&1 &
OP=$!
stop() {
  kill -TERM "$OP" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$OP" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$OP" 2>/dev/null || true
  wait "$OP" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq 1 150); do
  if curl -sf "http://$ADMIN/readyz" >/dev/null; then break; fi
  if ! kill -0 "$OP" 2>/dev/null; then echo "with-operator.sh: the operator exited; its log:" >&2; tail -30 "$LOG" >&2; exit 1; fi
  sleep 0.2
done
curl -sf "http://$ADMIN/readyz" >/dev/null || { echo "with-operator.sh: operator not ready after 30s" >&2; tail -30 "$LOG" >&2; exit 1; }
# Serving is not leading: wait until it holds the Lease and runs the controllers (a
# Lease left by an operator killed just before may take its duration, 15 s, to expire).
for _ in $(seq 1 200); do
  if curl -sf "http://$ADMIN/metrics" | grep -q '^datajob_leader 1$'; then break; fi
  if ! kill -0 "$OP" 2>/dev/null; then echo "with-operator.sh: the operator exited; its log:" >&2; tail -30 "$LOG" >&2; exit 1; fi
  sleep 0.2
done
curl -sf "http://$ADMIN/metrics" | grep -q '^datajob_leader 1$' || { echo "with-operator.sh: operator did not become the leader after 40s" >&2; tail -30 "$LOG" >&2; exit 1; }
echo "with-operator.sh: operator ready and leading (pid $OP, log $LOG)" >&2
export DATAJOB_OPERATOR_LOG=$LOG
set +e
"$@"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then echo "with-operator.sh: last lines of the operator log:" >&2; tail -40 "$LOG" >&2; fi
exit "$rc"
