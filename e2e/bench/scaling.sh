#!/usr/bin/env bash
# Benchmark: six node-group scalers on one trace of scheduled DataJobs and ad-hoc runs
# (schedule-aware, fixed 2-minute wait, simulated Karpenter-like and
# Cluster-Autoscaler-like, real Karpenter alone, real Karpenter + DataJob's buffers), on
# the local control plane with kwok nodes and real Karpenter (DATAJOB_KARPENTER=1, its
# kwok provider). Starts the cluster, Karpenter and the operator, replays the trace into
# the six groups at once (time compressed ×10), prints the table, and stops everything.
# Takes about 17 minutes with the default 2 simulated hours.
#
#   bash e2e/bench/scaling.sh
#   BENCH_HOURS=1 BENCH_ONLY=karpenter-real,karpenter-buffers bash e2e/bench/scaling.sh   # ~11 min
#
# Settings (see crates/e2e/benches/scaling.rs): BENCH_HOURS, BENCH_BOOT, BENCH_ONLY, BENCH_VERBOSE.
# The cluster's ports and directory follow e2e/cluster.sh's DATAJOB_* variables
# (DATAJOB_CLUSTER_DIR, DATAJOB_APISERVER_PORT, …), the operator's addresses
# DATAJOB_ADMIN_ADDR and DATAJOB_WEBHOOK_ADDR; the operator's log goes to
# target/bench-operator.log. Results are recorded in docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
cargo bench --profile dev -p datajob-e2e --features e2e --bench scaling --no-run
export DATAJOB_OPERATOR_LOG=${DATAJOB_OPERATOR_LOG:-$ROOT/target/bench-operator.log}
if [ -n "${DATAJOB_WEBHOOK_ADDR:-}" ]; then
  export DATAJOB_WEBHOOK_URL=${DATAJOB_WEBHOOK_URL:-https://$DATAJOB_WEBHOOK_ADDR}
fi
# No run of the trace publishes outputs on volumes: the operator needs no publisher image,
# and with DATAJOB_REAL_NODE=0 there is no registry to push one to.
export DATAJOB_PUBLISHER_IMAGE=${DATAJOB_PUBLISHER_IMAGE:-busybox}
# The two real-Karpenter columns need Karpenter (built once into the cache, like the
# control plane); DATAJOB_KARPENTER=0 with BENCH_ONLY naming only kwok scalers skips it.
export DATAJOB_KARPENTER=${DATAJOB_KARPENTER:-1}
exec bash e2e/run-e2e.sh bash e2e/with-operator.sh \
  cargo bench --profile dev -p datajob-e2e --features e2e --bench scaling
