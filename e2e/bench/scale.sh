#!/usr/bin/env bash
# Benchmark (`make bench-scale`): N scheduled DataJobs beside N plain CronJobs with the same
# pod, on the local control plane with kwok nodes; prints one table (see crates/e2e/benches/scale.rs).
# Builds the operator it measures: the static (musl) release binary the image ships, the
# one the Helm chart runs (BENCH_BINARY=glibc: the release build for this machine's libc
# instead; BENCH_OPERATOR=path: any binary). Starts a fresh cluster and stops everything.
#
#   bash e2e/bench/scale.sh
#   BENCH_SCALE_N=100,500 BENCH_SCALE_EVERY_MINUTE=100 BENCH_SCALE_SLOTS=3 bash e2e/bench/scale.sh
#
# The cluster's ports and directory follow e2e/cluster.sh's DATAJOB_* variables; the
# operator's log goes to target/bench-scale-operator.log. Results: docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
if [ -z "${BENCH_OPERATOR:-}" ]; then
  case "${BENCH_BINARY:-image}" in
    image)
      bash e2e/operator-image.sh >/dev/null
      export BENCH_OPERATOR=$ROOT/target/x86_64-unknown-linux-musl/release/datajob-operator ;;
    glibc)
      cargo build --release --bin datajob-operator
      export BENCH_OPERATOR=$ROOT/target/release/datajob-operator ;;
    *) echo "scale.sh: BENCH_BINARY is image or glibc, not ${BENCH_BINARY}" >&2; exit 2 ;;
  esac
fi
echo "scale.sh: measuring $BENCH_OPERATOR" >&2
cargo bench --profile dev -p datajob-e2e --features e2e --bench scale --no-run
exec bash e2e/run-e2e.sh bash -c '
  kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
  kubectl create namespace datajob-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl wait --for condition=established --timeout=30s crd/datajobs.datajob.dev >/dev/null
  cargo bench --profile dev -p datajob-e2e --features e2e --bench scale'
