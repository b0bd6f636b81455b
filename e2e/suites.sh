#!/usr/bin/env bash
# The end-to-end suites, in two phases, against the cluster in $KUBECONFIG
# (`make e2e` runs this through e2e/run-e2e.sh, which brings a fresh cluster up and down):
#
#   1. every tests/e2e_*.rs that shares one operator, run by e2e/with-operator.sh
#      (E2E_TEST_THREADS tests at a time, default 4);
#   2. the suites that start operators of their own or install the chart, one after the
#      other, with no shared operator running: e2e_ha (two replicas and a leader kill),
#      e2e_chart (helm install and uninstall; its webhook would slow everyone else),
#      e2e_observability (its own operator and Prometheus; its NodeGroups move every DataJob),
#      e2e_chaos (its own replicas killed, the apiserver and etcd restarted; the short run,
#      DATAJOB_CHAOS_SECONDS for a longer one: `make chaos`).
#
# Every suite runs even when one before it failed; the exit status says whether all passed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$HERE")"
OWN="e2e_ha e2e_chart e2e_observability e2e_incluster e2e_chaos"
shared=()
own=()
for f in tests/e2e_*.rs; do
  t=$(basename "$f" .rs)
  case " $OWN " in
    *" $t "*) own+=("$t");;
    *) shared+=(--test "$t");;
  esac
done
# Every operator the suites start runs as the Helm chart's ServiceAccount (the tests
# that need other rights start theirs with the admin kubeconfig).
export DATAJOB_WEBHOOK_URL=${DATAJOB_WEBHOOK_URL:-https://${DATAJOB_WEBHOOK_ADDR:-127.0.0.1:9443}}
DATAJOB_OPERATOR_KUBECONFIG=$(bash "$HERE/chart-identity.sh" | tail -n 1) || exit 1
export DATAJOB_OPERATOR_KUBECONFIG
rc=0
echo "suites.sh: phase 1, one shared operator: ${shared[*]}" >&2
bash "$HERE/with-operator.sh" cargo test --features e2e "${shared[@]}" --no-fail-fast \
  -- --test-threads="${E2E_TEST_THREADS:-4}" || rc=1
for t in "${own[@]}"; do
  echo "suites.sh: phase 2, $t on its own" >&2
  cargo test --features e2e --test "$t" -- --test-threads=1 || rc=1
done
exit "$rc"
