#!/usr/bin/env bash
# Local real Kubernetes control plane for end-to-end tests and the demo:
# etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok (fake kubelets)
# on 127.0.0.1, plus one real node (kubelet + containerd + runc + CNI bridge, node
# `real-0`, labelled and tainted datajob.dev/real-node=true) and a local OCI registry
# holding two busybox images; all state in one directory (see e2e/realnode/realnode.sh).
#
#   e2e/cluster.sh up       build (once, cached) and start; waits until usable
#   e2e/cluster.sh down     stop exactly the processes `up` started, remove the state dir
#   e2e/cluster.sh env      print `export KUBECONFIG=...`
#   e2e/cluster.sh status   say whether it runs (exit 0 = running, 1 = not)
#   e2e/cluster.sh karpenter-up    start real Karpenter on the running cluster (see
#                                  e2e/karpenter/karpenter.sh); karpenter-down stops it
#                                  and deletes the nodes it made
#   e2e/cluster.sh restart COMPONENT [--kill]
#                           stop one of etcd, kube-apiserver, kube-controller-manager,
#                           kube-scheduler (TERM, KILL after 5 s; --kill: KILL at once)
#                           and start it again with the same command line; returns once
#                           it (and, after etcd, the apiserver) is ready again
#
# Environment (all optional):
#   DATAJOB_CLUSTER_DIR    state dir            (default $HOME/.cache/datajob/cluster)
#   DATAJOB_CACHE          build cache          (default $HOME/.cache/datajob, see build.sh)
#   DATAJOB_APISERVER_PORT kube-apiserver port  (default 6443)
#   DATAJOB_ETCD_PORT      etcd client port     (default 2379; peer port = this + 1)
#   DATAJOB_KCM_PORT       kcm healthz port     (default 10257)
#   DATAJOB_SCHEDULER_PORT scheduler port       (default 10259)
#   DATAJOB_UP_TIMEOUT     seconds `up` waits for readiness (default 120)
#   DATAJOB_REAL_NODE      auto|1|0: the real node and registry (default auto: on when
#                          root with containerd, runc and CNI plugins, else skipped)
#   DATAJOB_KUBELET_PORT, DATAJOB_KUBELET_HEALTHZ_PORT, DATAJOB_REGISTRY_PORT,
#   DATAJOB_CNI_BRIDGE, DATAJOB_POD_SUBNET, DATAJOB_REAL_NODE_NAME: see
#                          e2e/realnode/realnode.sh (defaults 10250, 10248, 5000, dj-cni0,
#                          10.245.0.0/24, real-0; the ports, bridge and subnet shift with
#                          DATAJOB_APISERVER_PORT - 6443 when that is set)
#   DATAJOB_KARPENTER      1: `up` starts real Karpenter too (e2e/karpenter/karpenter.sh)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${DATAJOB_CLUSTER_DIR:-$HOME/.cache/datajob/cluster}
DIR=${DIR%/}
MARKER="$DIR/.datajob-cluster"
CONTROL_PLANE="etcd kube-apiserver kube-controller-manager kube-scheduler kwok"
COMPONENTS=$CONTROL_PLANE
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/16

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=realnode/realnode.sh
. "$HERE/realnode/realnode.sh"
# shellcheck source=karpenter/karpenter.sh
. "$HERE/karpenter/karpenter.sh"

# --- safety: never operate on a directory that is not ours -------------------
case "$DIR" in
  ""|/|"$HOME"|/root|/home|/tmp|/usr|/etc|/var) die "refusing to use DATAJOB_CLUSTER_DIR=$DIR";;
esac
check_ours() {
  if [ -d "$DIR" ] && [ ! -f "$MARKER" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    die "$DIR exists, is not empty and was not created by cluster.sh; refusing to touch it"
  fi
}

# --- ports: fixed at `up`, remembered in $DIR/cluster.env ---------------------
load_env() {
  if [ -f "$DIR/cluster.env" ]; then
    # shellcheck disable=SC1091
    . "$DIR/cluster.env"
  fi
  APISERVER_PORT=${APISERVER_PORT:-${DATAJOB_APISERVER_PORT:-6443}}
  ETCD_PORT=${ETCD_PORT:-${DATAJOB_ETCD_PORT:-2379}}
  ETCD_PEER_PORT=${ETCD_PEER_PORT:-$((ETCD_PORT + 1))}
  KCM_PORT=${KCM_PORT:-${DATAJOB_KCM_PORT:-10257}}
  SCHEDULER_PORT=${SCHEDULER_PORT:-${DATAJOB_SCHEDULER_PORT:-10259}}
  realnode_load_env
  karpenter_load_env
  COMPONENTS=$CONTROL_PLANE
  if [ "${REAL_NODE:-0}" = 1 ]; then COMPONENTS="$COMPONENTS $REAL_NODE_COMPONENTS"; fi
  if [ "$KARPENTER" = 1 ]; then COMPONENTS="$COMPONENTS karpenter"; fi
}

# --- process bookkeeping --------------------------------------------------------
pidfile() { echo "$DIR/run/$1.pid"; }
# pid of a component if it is alive AND really the one we started
# (its command line names our state dir; guards against pid reuse).
live_pid() {
  local f pid
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" || return 1
  echo "$pid"
}
any_alive() { local c; for c in $COMPONENTS; do live_pid "$c" >/dev/null && return 0; done; return 1; }
all_alive() { local c; for c in $COMPONENTS; do live_pid "$c" >/dev/null || return 1; done; return 0; }

# Start a component detached from the caller: own session (setsid), immune to
# SIGHUP (nohup), stdin from /dev/null, stdout+stderr to its log, every other
# inherited fd closed (so no caller pipe, e.g. of make or $(...), stays open).
# The pid is written by the process itself right before exec, so the pid file
# always holds the real binary's pid.
launch() {
  local name=$1; shift
  # shellcheck disable=SC2016  # expanded by the inner bash
  setsid nohup bash -c '
    for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"; done
    echo $$ > "$0"; exec "$@"' "$(pidfile "$name")" "$@" \
    </dev/null >"$DIR/logs/$name.log" 2>&1 &
  for _ in $(seq 1 250); do [ -s "$(pidfile "$name")" ] && return 0; sleep 0.02; done
  die "$name did not start (see $DIR/logs/$name.log)"
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# --- certificates ---------------------------------------------------------------
# EC P-256 keys: as good as RSA for this and generated in milliseconds.
gen_key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 600 "$1"; }
# sign_cert NAME SUBJECT EXTENSIONS
sign_cert() {
  local p="$DIR/pki/$1"
  gen_key "$p.key"
  openssl req -new -key "$p.key" -subj "$2" -out "$p.csr" 2>/dev/null
  printf '%s\n' "$3" >"$p.ext"
  openssl x509 -req -in "$p.csr" -CA "$DIR/pki/ca.crt" -CAkey "$DIR/pki/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$p.ext" -out "$p.crt" 2>/dev/null
  rm -f "$p.csr" "$p.ext"
}
make_pki() {
  mkdir -p "$DIR/pki"
  gen_key "$DIR/pki/ca.key"
  openssl req -x509 -new -key "$DIR/pki/ca.key" -subj "/CN=datajob-e2e-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$DIR/pki/ca.crt" 2>/dev/null
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  sign_cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1"
  sign_cert admin "/O=system:masters/CN=datajob-admin" "$client"
  sign_cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  sign_cert kube-scheduler "/CN=system:kube-scheduler" "$client"
  # kwok plays every kubelet (patches node and pod status, deletes pods): give it admin rights.
  sign_cert kwok "/O=system:masters/CN=kwok-controller" "$client"
  # the apiserver's identity towards kubelets (logs, exec): authorized on the kubelet
  # through its webhook authorizer (a SubjectAccessReview; system:masters may do all)
  sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  # service-account token signing key pair
  gen_key "$DIR/pki/sa.key"
  openssl ec -in "$DIR/pki/sa.key" -pubout -out "$DIR/pki/sa.pub" 2>/dev/null
}
# write_kubeconfig FILE USER(cert name)
write_kubeconfig() {
  local b64='base64 -w0'
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: datajob-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $($b64 <"$DIR/pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $($b64 <"$DIR/pki/$2.crt")
    client-key-data: $($b64 <"$DIR/pki/$2.key")
contexts:
- name: datajob-e2e
  context:
    cluster: datajob-e2e
    user: $2
current-context: datajob-e2e
EOF
  chmod 600 "$1"
}

# --- readiness helpers ----------------------------------------------------------
api_get() { curl -sf --max-time 3 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" "https://127.0.0.1:$APISERVER_PORT$1"; }
healthz() { curl -skf --max-time 3 "https://127.0.0.1:$1/healthz" >/dev/null 2>&1; }
# wait_until DESCRIPTION COMMAND...  (against the global deadline)
wait_until() {
  local what=$1; shift
  while ! "$@" >/dev/null 2>&1; do
    local c p
    for c in $COMPONENTS; do
      # exited: its pid is gone (not `live_pid`, whose command-line check fails for the
      # instant between a relaunch's fork and its exec)
      p=$(cat "$(pidfile "$c")" 2>/dev/null) || continue
      if [ -n "$p" ] && ! alive "$p"; then
        log "$c exited while waiting for: $what; last lines of $DIR/logs/$c.log:"
        tail -n 30 "$DIR/logs/$c.log" >&2 || true
        return 1
      fi
    done
    if [ "$(date +%s)" -ge "$DEADLINE" ]; then log "timed out waiting for: $what"; return 1; fi
    sleep 0.25
  done
}
nodes_ready() {
  local out
  out=$("$KUBECTL" get nodes -l type=kwok -o 'jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints}{"\n"}{end}') || return 1
  [ -n "$out" ] || return 1
  # every node Ready=True and without the node-lifecycle "not-ready" taint
  ! printf '%s\n' "$out" | grep -v -E '^[^ ]+ True $' | grep -q .
}

print_usage_hint() {
  cat <<EOF
Cluster is up (state in $DIR).
  export KUBECONFIG=$DIR/kubeconfig
  export PATH=$BIN:\$PATH      # kubectl $K8S_VERSION and friends
  kubectl get nodes
Logs: $DIR/logs/   Stop: bash $HERE/cluster.sh down
EOF
  if [ "${REAL_NODE:-0}" = 1 ]; then
    cat <<EOF
Real node $REAL_NODE_NAME (kubelet :$KUBELET_PORT, containerd $CONTAINERD_SOCK), registry http://$REGISTRY:
  $IMAGE_NONROOT   $IMAGE_ROOT
EOF
  fi
}

# --- commands ---------------------------------------------------------------------
# alive = some thread of it is not a zombie (zombies of detached daemons are reaped
# by init, sometimes late; they count as stopped). Every thread, not only the main
# one: a Go program's main thread turns zombie while its other threads still exit,
# and they hold its open sockets until the last one is gone (seen: etcd restarted
# at once could not bind its peer port, "address already in use").
alive() {
  local f st
  for f in /proc/"$1"/task/*/stat; do
    st=$(awk '{print $3}' "$f" 2>/dev/null) || continue
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] && return 0
  done
  return 1
}
# stop_pids SECONDS PID... : TERM, wait up to SECONDS, then KILL
stop_pids() {
  local secs=$1 pid left; shift
  [ $# -gt 0 ] || return 0
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 $((secs * 10))); do
    left=""
    for pid in "$@"; do alive "$pid" && left="$left $pid"; done
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  log "still alive after ${secs}s, sending KILL to:$left"
  for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    left=""
    for pid in "$@"; do alive "$pid" && left="$left $pid"; done
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  log "WARNING: could not stop:$left"
}

do_down() {
  check_ours
  [ -d "$DIR" ] || { log "not running (no $DIR)"; return 0; }
  load_env
  local c pid first=() last=()
  # Karpenter first, while the apiserver still answers: the nodes it made go with it
  karpenter_stop
  # the real node: the kubelet first (so it restarts nothing), then every pod's
  # processes (through containerd, then whatever is left in its cgroups)
  if [ "${REAL_NODE:-0}" = 1 ]; then
    if pid=$(live_pid kubelet); then stop_pids 5 "$pid"; fi
    realnode_kill_pods
  fi
  # clients first (with the apiserver, containerd and the registry), etcd last so the
  # apiserver can shut down cleanly
  for c in karpenter kwok kube-scheduler kube-controller-manager kube-apiserver containerd registry; do
    if pid=$(live_pid "$c"); then first+=("$pid"); fi
  done
  if pid=$(live_pid etcd); then last+=("$pid"); fi
  stop_pids 5 ${first[@]+"${first[@]}"}
  stop_pids 5 ${last[@]+"${last[@]}"}
  # shims, mounts (pod volumes, rootfs, shm, netns), the bridge and veths, cgroups
  if [ "${REAL_NODE:-0}" = 1 ]; then
    realnode_sweep
  else
    realnode_unmount_all
  fi
  rm -rf "$DIR"
  log "stopped; removed $DIR"
}

do_up() {
  local start_ts; start_ts=$(date +%s.%N)
  BIN=$(bash "$HERE/build.sh" | tail -n 1)
  [ -x "$BIN/kube-apiserver" ] || die "build.sh did not produce binaries (got '$BIN')"
  STAGES="$(dirname "$BIN")/stages"
  # shellcheck source=versions.env
  . "$HERE/versions.env"
  KUBECTL="$BIN/kubectl"

  check_ours
  if [ -d "$DIR" ]; then
    load_env
    export KUBECONFIG="$DIR/kubeconfig"
    if all_alive && api_get /readyz >/dev/null 2>&1; then
      log "already running (state in $DIR); nothing to do"
      print_usage_hint
      return 0
    fi
    if any_alive; then
      log "found a broken cluster in $DIR (some components dead or apiserver not ready); restarting it"
    else
      log "found stale state from a crashed run in $DIR; cleaning it"
    fi
    do_down
  fi
  unset APISERVER_PORT ETCD_PORT ETCD_PEER_PORT KCM_PORT SCHEDULER_PORT REAL_NODE REAL_NODE_NAME \
    KARPENTER KARPENTER_METRICS_PORT KARPENTER_HEALTH_PORT \
    KUBELET_PORT KUBELET_HEALTHZ_PORT REGISTRY_PORT CNI_BRIDGE REAL_POD_SUBNET CGROUP_ROOT CNI_BIN_DIR
  load_env
  local p
  for p in "$APISERVER_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" "$KCM_PORT" "$SCHEDULER_PORT"; do
    port_busy "$p" && die "port $p is already in use by another process (set DATAJOB_*_PORT, see the header of $0)"
  done
  realnode_preflight
  if [ "$REAL_NODE" = 1 ]; then
    realnode_check_free
    realnode_build
    COMPONENTS="$CONTROL_PLANE $REAL_NODE_COMPONENTS"
  fi

  mkdir -p "$DIR/run" "$DIR/logs" "$DIR/home" && mkdir -m 700 "$DIR/etcd"
  touch "$MARKER"
  cat >"$DIR/cluster.env" <<EOF
APISERVER_PORT=$APISERVER_PORT
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
BIN=$BIN
KUBECTL=$KUBECTL
KUBECONFIG=$DIR/kubeconfig
EOF
  realnode_env_lines >>"$DIR/cluster.env"
  karpenter_env_lines >>"$DIR/cluster.env"
  make_pki
  write_kubeconfig "$DIR/kubeconfig" admin
  write_kubeconfig "$DIR/kube-controller-manager.kubeconfig" kube-controller-manager
  write_kubeconfig "$DIR/kube-scheduler.kubeconfig" kube-scheduler
  write_kubeconfig "$DIR/kwok.kubeconfig" kwok
  if [ "$REAL_NODE" = 1 ]; then realnode_configure; fi
  export KUBECONFIG="$DIR/kubeconfig"
  DEADLINE=$(( $(date +%s) + ${DATAJOB_UP_TIMEOUT:-120} ))
  trap 'log "up failed; logs kept in $DIR/logs (run: bash $0 down)"' ERR

  local etcd_url="http://127.0.0.1:$ETCD_PORT" peer_url="http://127.0.0.1:$ETCD_PEER_PORT"
  launch etcd "$BIN/etcd" --name=node0 --data-dir="$DIR/etcd" \
    --listen-client-urls="$etcd_url" --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="$peer_url" --initial-advertise-peer-urls="$peer_url" \
    --initial-cluster="node0=$peer_url" --initial-cluster-state=new \
    --unsafe-no-fsync=true --auto-compaction-retention=1 --quota-backend-bytes=2147483648 \
    --log-level=warn
  # the real node's registry and containerd need nothing from the control plane
  if [ "$REAL_NODE" = 1 ]; then realnode_start_early; fi

  launch kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="$etcd_url" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$DIR/pki/apiserver.crt" --tls-private-key-file="$DIR/pki/apiserver.key" \
    --client-ca-file="$DIR/pki/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction,PodNodeSelector,PodTolerationRestriction \
    --kubelet-client-certificate="$DIR/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$DIR/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$DIR/pki/ca.crt" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-issuer=datajob-e2e \
    --service-account-key-file="$DIR/pki/sa.pub" \
    --service-account-signing-key-file="$DIR/pki/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --cert-dir="$DIR/pki/apiserver-generated" \
    --profiling=false

  if [ "$REAL_NODE" = 1 ]; then realnode_load_images; fi
  wait_until "etcd health" curl -sf --max-time 2 "$etcd_url/health"
  wait_until "kube-apiserver /readyz" api_get /readyz
  if [ "$REAL_NODE" = 1 ]; then realnode_start_kubelet; fi

  launch kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
    --leader-elect=false --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$DIR/pki/sa.key" --root-ca-file="$DIR/pki/ca.crt" \
    --cluster-signing-cert-file="$DIR/pki/ca.crt" --cluster-signing-key-file="$DIR/pki/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false \
    --cert-dir="$DIR/pki/kcm-generated"

  launch kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$DIR/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
    --leader-elect=false \
    --cert-dir="$DIR/pki/scheduler-generated"

  # kwok reads ~/.kwok/kwok.yaml if present: give it an empty HOME of its own.
  local cfg=() f
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-delete.yaml; do
    [ -f "$STAGES/$f" ] || die "missing kwok stage $STAGES/$f"
    cfg+=("--config=$STAGES/$f")
  done
  cfg+=("--config=$HERE/kwok/stages.yaml")
  launch kwok env HOME="$DIR/home" "$BIN/kwok" \
    --kubeconfig="$DIR/kwok.kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 \
    --cidr="$POD_CIDR" --node-ip=10.200.0.1 \
    "${cfg[@]}"

  "$KUBECTL" apply -f "$HERE/kwok/nodes.yaml" >/dev/null

  wait_until "kube-controller-manager /healthz" healthz "$KCM_PORT"
  wait_until "kube-scheduler /healthz" healthz "$SCHEDULER_PORT"
  wait_until "namespace default" "$KUBECTL" get namespace default
  wait_until "service account default/default" "$KUBECTL" -n default get serviceaccount default
  wait_until "kwok nodes Ready and untainted" nodes_ready
  if [ "$REAL_NODE" = 1 ]; then
    wait_until "real node $REAL_NODE_NAME Ready (only its own taint)" real_node_ready
  fi
  if [ "$KARPENTER" = 1 ]; then karpenter_start; fi
  trap - ERR
  local took; took=$(awk -v s="$start_ts" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
  log "ready in ${took}s"
  print_usage_hint
}

do_status() {
  check_ours
  if [ ! -d "$DIR" ]; then echo "not running (no $DIR)"; return 1; fi
  load_env
  local c pid rc=0
  for c in $COMPONENTS; do
    if pid=$(live_pid "$c"); then echo "  $c: running (pid $pid)"; else echo "  $c: NOT running"; rc=1; fi
  done
  if [ "$rc" = 0 ] && api_get /readyz >/dev/null 2>&1; then
    echo "running: https://127.0.0.1:$APISERVER_PORT (export KUBECONFIG=$DIR/kubeconfig)"
    return 0
  fi
  echo "not running (state dir $DIR exists; run: bash $0 down)"
  return 1
}

# restart COMPONENT [--kill]: one component down and up again, with the command line it
# was started with (read from /proc), its log kept as <component>.log.<time>.
do_restart() {
  local c=${1:-} how=${2:-} pid t0 took args=()
  case "$c" in
    etcd|kube-apiserver|kube-controller-manager|kube-scheduler) ;;
    *) die "restart: give one of etcd, kube-apiserver, kube-controller-manager, kube-scheduler (got '$c')";;
  esac
  case "$how" in ""|--kill) ;; *) die "restart: unknown option $how (only --kill)";; esac
  check_ours
  [ -d "$DIR" ] || die "restart: the cluster is not running (no $DIR)"
  load_env
  pid=$(live_pid "$c") || die "restart: $c is not running"
  mapfile -d '' args <"/proc/$pid/cmdline"
  [ ${#args[@]} -gt 0 ] || die "restart: cannot read the command line of $c (pid $pid)"
  t0=$(date +%s.%N)
  if [ "$how" = --kill ]; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  else
    stop_pids 5 "$pid"
  fi
  alive "$pid" && die "restart: $c (pid $pid) did not stop"
  log "$c stopped (pid $pid); starting it again"
  mv "$DIR/logs/$c.log" "$DIR/logs/$c.log.$(date +%s)" 2>/dev/null || true
  launch "$c" "${args[@]}"
  DEADLINE=$(( $(date +%s) + ${DATAJOB_UP_TIMEOUT:-120} ))
  case "$c" in
    etcd)
      wait_until "etcd health" curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"
      wait_until "kube-apiserver /readyz" api_get /readyz;;
    kube-apiserver) wait_until "kube-apiserver /readyz" api_get /readyz;;
    kube-controller-manager) wait_until "kube-controller-manager /healthz" healthz "$KCM_PORT";;
    kube-scheduler) wait_until "kube-scheduler /healthz" healthz "$SCHEDULER_PORT";;
  esac
  took=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
  log "restarted $c: ready again ${took}s after it was stopped"
}

# karpenter-up | karpenter-down: real Karpenter on (or off) the running cluster.
do_karpenter() {
  check_ours
  [ -d "$DIR" ] || die "$1: the cluster is not running (no $DIR)"
  load_env
  export KUBECONFIG="$DIR/kubeconfig"
  case "$1" in
    karpenter-up)
      if live_pid karpenter >/dev/null; then log "Karpenter already running"; return 0; fi
      karpenter_start
      sed -i 's/^KARPENTER=.*/KARPENTER=1/' "$DIR/cluster.env";;
    karpenter-down)
      karpenter_stop
      sed -i 's/^KARPENTER=.*/KARPENTER=0/' "$DIR/cluster.env"
      log "Karpenter stopped";;
  esac
}

cmd=${1:-}
case "$cmd" in
  up|down)
    # serialize up/down; the lock lives on the parent directory so that `down`
    # can remove $DIR completely. Started daemons never inherit fd 9.
    mkdir -p "$(dirname "$DIR")"
    exec 9<"$(dirname "$DIR")"
    flock -w 600 9 || die "could not take the lock on $(dirname "$DIR")"
    if [ "$cmd" = up ]; then do_up; else do_down; fi
    ;;
  env) echo "export KUBECONFIG=$DIR/kubeconfig"
       [ -f "$DIR/kubeconfig" ] || log "warning: cluster is not up (no $DIR/kubeconfig)";;
  status) do_status;;
  karpenter-up|karpenter-down)
    mkdir -p "$(dirname "$DIR")"
    exec 9<"$(dirname "$DIR")"
    flock -w 600 9 || die "could not take the lock on $(dirname "$DIR")"
    do_karpenter "$cmd";;
  restart)
    # the same lock as up/down: a restart never interleaves with them
    mkdir -p "$(dirname "$DIR")"
    exec 9<"$(dirname "$DIR")"
    flock -w 600 9 || die "could not take the lock on $(dirname "$DIR")"
    do_restart "${2:-}" "${3:-}";;
  *) echo "usage: $0 up|down|env|status|karpenter-up|karpenter-down|restart COMPONENT [--kill]" >&2; exit 2;;
esac
