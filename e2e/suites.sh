#!/usr/bin/env bash
# The end-to-end suites, in two phases, against the cluster in $KUBECONFIG
# (`make e2e` runs this through e2e/run-e2e.sh, which brings a fresh cluster up and down).
# Every suite is a module of one test binary, crates/e2e/tests/e2e (`cargo test -p
# datajob-e2e --features e2e --test e2e`):
#
#   1. the suites under shared/, one after the other, with one operator for all of them,
#      run by e2e/with-operator.sh (E2E_TEST_THREADS tests of a suite at a time, default 4);
#   2. the suites under alone/, one after the other, with no shared operator running:
#      ha (two replicas and a leader kill), chart (helm install and uninstall; its webhook
#      would slow everyone else), archive (its own operator keeping a log archive in
#      e2e/s3.sh's S3-compatible server; it freezes that server), observability (its own operator and Prometheus; its
#      NodeGroups move every DataJob), incluster (the operator's image in a pod), chaos
#      (its own replicas killed, the apiserver and etcd restarted; the short run,
#      DATAJOB_CHAOS_SECONDS for a longer one: `make chaos`).
#
#   e2e/suites.sh --shared   phase 1's loop alone (what with-operator.sh runs)
#
# Every suite runs even when one before it failed; the exit status says whether all passed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$HERE")"
SUITES=crates/e2e/tests/e2e
E2E=(cargo test -p datajob-e2e --features e2e --test e2e)
suites() { for f in "$SUITES/$1"/*.rs; do basename "$f" .rs; done; }

if [ "${1:-}" = --shared ]; then
  rc=0
  for s in $(suites shared); do
    echo "suites.sh: phase 1, shared::$s" >&2
    "${E2E[@]}" -- --test-threads="${E2E_TEST_THREADS:-4}" "shared::$s::" || rc=1
  done
  exit "$rc"
fi

# Every operator the suites start runs as the Helm chart's ServiceAccount (the tests
# that need other rights start theirs with the admin kubeconfig).
export DATAJOB_WEBHOOK_URL=${DATAJOB_WEBHOOK_URL:-https://${DATAJOB_WEBHOOK_ADDR:-127.0.0.1:9443}}
DATAJOB_OPERATOR_KUBECONFIG=$(bash "$HERE/chart-identity.sh" | tail -n 1) || exit 1
export DATAJOB_OPERATOR_KUBECONFIG
rc=0
echo "suites.sh: phase 1, one shared operator: $(suites shared | tr '\n' ' ')" >&2
bash "$HERE/with-operator.sh" bash "$HERE/suites.sh" --shared || rc=1
for s in $(suites alone); do
  echo "suites.sh: phase 2, alone::$s on its own" >&2
  "${E2E[@]}" -- --test-threads=1 "alone::$s::" || rc=1
done
exit "$rc"
