#!/usr/bin/env bash
# Add or remove fake (kwok) nodes in the cluster started by e2e/cluster.sh.
#
#   e2e/kwok/node.sh add NAME CPU MEMORY [key=value ...] [--taint key=value:Effect ...]
#                        [--pods N] [--ephemeral-storage QTY] [--no-wait]
#   e2e/kwok/node.sh remove NAME
#   e2e/kwok/node.sh list
#
# e.g.  node.sh add kwok-gpu-0 8 32Gi datajob.dev/node-pool=gpu --taint gpu=true:NoSchedule
#
# `add` creates (or updates) a Node annotated kwok.x-k8s.io/node=fake with the given
# capacity (= allocatable), labels type=kwok, kubernetes.io/hostname=NAME plus yours,
# then waits until kwok reports it Ready (unless --no-wait).
# `remove` deletes the Node; pods bound to it are then garbage-collected by the
# controller-manager's pod GC, as in a real cluster (this takes up to ~40 s).
# Uses the built kubectl and the cluster's admin kubeconfig.
set -euo pipefail
DIR=${DATAJOB_CLUSTER_DIR:-$HOME/.cache/datajob/cluster}
DIR=${DIR%/}
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "node.sh: $*" >&2; exit 1; }

case "${1:-}" in add|remove|delete|list) ;; *) usage;; esac
[ -f "$DIR/cluster.env" ] || die "cluster is not up (no $DIR/cluster.env); run e2e/cluster.sh up"
# shellcheck disable=SC1091
. "$DIR/cluster.env"
export KUBECONFIG="$DIR/kubeconfig"
k() { "$KUBECTL" "$@"; }

cmd=${1:-}; shift || true
case "$cmd" in
  add)
    [ $# -ge 3 ] || usage
    name=$1 cpu=$2 mem=$3; shift 3
    pods=110 eph=100Gi wait=1 labels="" taints=""
    while [ $# -gt 0 ]; do
      case "$1" in
        --taint) [ $# -ge 2 ] || usage
                 t=$2; shift 2
                 [[ "$t" =~ ^([^=:]+)(=([^:]*))?:(NoSchedule|PreferNoSchedule|NoExecute)$ ]] \
                   || die "bad taint '$t' (want key=value:Effect or key:Effect)"
                 taints+="
  - key: \"${BASH_REMATCH[1]}\"
    value: \"${BASH_REMATCH[3]}\"
    effect: ${BASH_REMATCH[4]}";;
        --pods) pods=$2; shift 2;;
        --ephemeral-storage) eph=$2; shift 2;;
        --no-wait) wait=0; shift;;
        *=*) key=${1%%=*} val=${1#*=}
             labels+="
    \"$key\": \"$val\""; shift;;
        *) die "unexpected argument '$1' (labels are key=value)";;
      esac
    done
    # a stable, distinct InternalIP per node name (pods' hostIP)
    h=$(printf '%s' "$name" | cksum | cut -d' ' -f1)
    ip="10.201.$(( (h / 256) % 256 )).$(( h % 254 + 1 ))"
    spec="spec: {}"
    [ -n "$taints" ] && spec="spec:
  taints:$taints"
    k apply -f - <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: "$name"
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64$labels
$spec
status:
  capacity: {cpu: "$cpu", memory: "$mem", ephemeral-storage: "$eph", pods: "$pods"}
  allocatable: {cpu: "$cpu", memory: "$mem", ephemeral-storage: "$eph", pods: "$pods"}
  addresses: [{type: InternalIP, address: "$ip"}, {type: Hostname, address: "$name"}]
  nodeInfo: {architecture: amd64, operatingSystem: linux}
EOF
    if [ "$wait" = 1 ]; then
      k wait --for=condition=Ready "node/$name" --timeout=60s
    fi
    ;;
  remove|delete)
    [ $# -eq 1 ] || usage
    k delete node "$1" --ignore-not-found --wait=true
    ;;
  list)
    k get nodes -l type=kwok -o wide
    ;;
  *) usage;;
esac
