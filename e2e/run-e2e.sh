#!/usr/bin/env bash
# Run the end-to-end tests against a fresh local control plane, and always tear
# it down afterwards (also when a test fails or the run is interrupted).
#
#   e2e/run-e2e.sh                      every e2e test (crates/e2e/tests/e2e), E2E_TEST_THREADS (default 4) threads
#   e2e/run-e2e.sh cargo test -p datajob-e2e --features e2e --test e2e -- shared::harness:: --nocapture
#                                       any command; it gets KUBECONFIG (and PATH with kubectl)
#
# Exit status: the test command's. DATAJOB_KEEP_CLUSTER=1 leaves the cluster up
# (for debugging; stop it with e2e/cluster.sh down).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT"

if [ $# -eq 0 ]; then
  # compile before the cluster starts, so it does not idle during the build
  cargo build --bins
  cargo test -p datajob-e2e --features e2e --test e2e --no-run
  set -- cargo test -p datajob-e2e --features e2e --test e2e -- --test-threads="${E2E_TEST_THREADS:-4}"
fi

# shellcheck disable=SC2317  # invoked by the EXIT trap
down() {
  if [ "${DATAJOB_KEEP_CLUSTER:-0}" = 1 ]; then
    echo "run-e2e.sh: DATAJOB_KEEP_CLUSTER=1, leaving the cluster up ($(bash "$HERE/cluster.sh" env))" >&2
  else
    bash "$HERE/cluster.sh" down || true
  fi
}
trap down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$HERE/cluster.sh" up
eval "$(bash "$HERE/cluster.sh" env)"
# shellcheck disable=SC1091
BIN=$(. "${DATAJOB_CLUSTER_DIR:-$HOME/.cache/datajob/cluster}/cluster.env" && echo "$BIN")
export KUBECONFIG PATH="$BIN:$PATH"

echo "run-e2e.sh: $*" >&2
set +e
"$@"
rc=$?
set -e
echo "run-e2e.sh: test command exited with $rc" >&2
exit "$rc"
