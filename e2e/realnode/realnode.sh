# shellcheck shell=bash
# The real node of the local cluster: one kubelet with containerd, runc and CNI (bridge +
# host-local + loopback) beside the kwok nodes, plus a local OCI registry the kubelet pulls
# from over plain HTTP. Sourced by e2e/cluster.sh (uses its DIR, log, die, launch,
# live_pid, stop_pids, sign_cert, write_kubeconfig, wait_until); not run on its own.
# e2e/demo.sh sources it too, for what the real node needs (REAL_NODE_NEEDS,
# REAL_NODE_PACKAGES, realnode_missing, realnode_cgroup_ok) and nothing else.
#
# Everything lives under the cluster dir $DIR: containerd's root/state/sockets, the
# kubelet's root dir and pod logs, CNI config and IPAM state, the registry's blobs.
# Outside it, and removed again by `down`: the CNI bridge (+ the pods' veths), a cgroup
# subtree /datajob-<hash of $DIR> in each cgroup hierarchy, the kubelet's
# /var/log/containers links, containerd's shim sockets in /run/containerd/s.
#
# Environment (all optional; the defaults of the ports, bridge and subnet move with
# DATAJOB_APISERVER_PORT, by its distance from 6443, so that a second cluster that sets
# only the control-plane ports does not collide with the first):
#   DATAJOB_REAL_NODE              auto (default: on when possible, else skipped with a
#                                  log line), 1 (required: `up` fails without it), 0 (off)
#   DATAJOB_REAL_NODE_NAME         node name                       (default real-0)
#   DATAJOB_KUBELET_PORT           kubelet API port                (default 10250 + off)
#   DATAJOB_KUBELET_HEALTHZ_PORT   kubelet healthz port            (default 10248 + off)
#   DATAJOB_REGISTRY_PORT          local registry port             (default 5000 + off)
#   DATAJOB_CNI_BRIDGE             CNI bridge name                 (default dj-cni0, or dj-cni-<off>)
#   DATAJOB_POD_SUBNET             the real node's pod /24         (default 10.245.<off mod 256>.0/24)
#   DATAJOB_CNI_BIN_DIR            CNI plugin binaries             (default /usr/lib/cni, else /opt/cni/bin)

REAL_NODE_LABEL=datajob.dev/real-node
# shellcheck disable=SC2034  # used by cluster.sh
REAL_NODE_COMPONENTS="registry containerd kubelet"

# What the real node needs on this machine besides root and a memory cgroup, and the
# Debian package that has it: the one list behind realnode_preflight's check and its
# install hint, and behind the set-up of e2e/demo.sh. One need per line, KIND NAME PACKAGE:
#   cmd NAME   NAME is on the PATH          cni NAME   the CNI plugin NAME is in CNI_BIN_DIR
#   exe PATH   PATH is an executable file   file PATH  PATH is a file
REAL_NODE_NEEDS="
cmd containerd containerd
cmd containerd-shim-runc-v2 containerd
cmd ctr containerd
cmd runc runc
cni bridge containernetworking-plugins
cni host-local containernetworking-plugins
cni loopback containernetworking-plugins
exe /bin/busybox busybox-static
cmd gcc gcc
file /usr/include/stdio.h libc6-dev
cmd jq jq
cmd ip iproute2
"
# Its packages, each once, in that order.
REAL_NODE_PACKAGES=$(awk 'NF == 3 && !seen[$3]++ { printf "%s%s", sep, $3; sep = " " }' <<<"$REAL_NODE_NEEDS")

# Where the CNI plugins are: DATAJOB_CNI_BIN_DIR, else /usr/lib/cni (Debian's), else
# /opt/cni/bin when only that one has them.
realnode_default_cni_dir() {
  local d=${DATAJOB_CNI_BIN_DIR:-}
  if [ -z "$d" ]; then
    d=/usr/lib/cni
    [ -x "$d/bridge" ] || [ ! -x /opt/cni/bin/bridge ] || d=/opt/cni/bin
  fi
  echo "$d"
}

# The needs of REAL_NODE_NEEDS this machine lacks, one per line: what is missing, a tab,
# the package that has it. Nothing when all is there.
realnode_missing() {
  local kind name pkg cni=${CNI_BIN_DIR:-$(realnode_default_cni_dir)}
  while read -r kind name pkg; do
    case "$kind" in
      cmd) command -v "$name" >/dev/null 2>&1 || printf '%s missing\t%s\n' "$name" "$pkg" ;;
      cni) [ -x "$cni/$name" ] || printf 'CNI plugin %s missing\t%s\n' "$cni/$name" "$pkg" ;;
      exe) [ -x "$name" ] || printf '%s missing\t%s\n' "$name" "$pkg" ;;
      file) [ -f "$name" ] || printf '%s missing\t%s\n' "$name" "$pkg" ;;
    esac
  done <<<"$REAL_NODE_NEEDS"
}

# The kubelet needs the memory cgroup controller (cgroup v1 or v2).
realnode_cgroup_ok() { [ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ]; }

# Fill in the real-node settings (after cluster.env was read, if any).
realnode_load_env() {
  local off=$((APISERVER_PORT - 6443))
  REAL_NODE_NAME=${REAL_NODE_NAME:-${DATAJOB_REAL_NODE_NAME:-real-0}}
  KUBELET_PORT=${KUBELET_PORT:-${DATAJOB_KUBELET_PORT:-$((10250 + off))}}
  KUBELET_HEALTHZ_PORT=${KUBELET_HEALTHZ_PORT:-${DATAJOB_KUBELET_HEALTHZ_PORT:-$((10248 + off))}}
  REGISTRY_PORT=${REGISTRY_PORT:-${DATAJOB_REGISTRY_PORT:-$((5000 + off))}}
  if [ "$off" = 0 ]; then CNI_BRIDGE=${CNI_BRIDGE:-${DATAJOB_CNI_BRIDGE:-dj-cni0}}
  else CNI_BRIDGE=${CNI_BRIDGE:-${DATAJOB_CNI_BRIDGE:-dj-cni-$off}}; fi
  REAL_POD_SUBNET=${REAL_POD_SUBNET:-${DATAJOB_POD_SUBNET:-10.245.$((off & 255)).0/24}}
  REGISTRY=127.0.0.1:$REGISTRY_PORT
  # the kubelet refuses a loopback node IP: the node's address is the bridge's (the
  # pods' gateway, .1 of the subnet); up creates the bridge with it
  REAL_NODE_IP=${REAL_POD_SUBNET%.0/24}.1
  CD_DIR=$DIR/containerd
  CONTAINERD_SOCK=$CD_DIR/containerd.sock
  # one cgroup subtree per cluster dir: two kubelets never share /kubepods
  CGROUP_ROOT=${CGROUP_ROOT:-/datajob-$(printf '%s' "$DIR" | sha256sum | cut -c1-10)}
  [ -n "${CNI_BIN_DIR:-}" ] || CNI_BIN_DIR=$(realnode_default_cni_dir)
}

# Decide whether this `up` gets a real node: REAL_NODE=1, or 0 and REAL_NODE_WHY.
realnode_preflight() {
  local want=${DATAJOB_REAL_NODE:-auto} why="" what
  case "$want" in
    0|false|no|off) REAL_NODE=0; REAL_NODE_WHY="DATAJOB_REAL_NODE=$want"
                    log "real node: off ($REAL_NODE_WHY); only kwok nodes"; return 0 ;;
    1|true|yes|on|auto) ;;
    *) die "DATAJOB_REAL_NODE must be 0, 1 or auto (got '$want')" ;;
  esac
  [ "$(id -u)" = 0 ] || why="not root (containerd and the kubelet need root)"
  while IFS=$'\t' read -r what _; do
    [ -z "$what" ] || why="${why:+$why; }$what"
  done < <(realnode_missing)
  realnode_cgroup_ok || why="${why:+$why; }no memory cgroup"
  if [ -n "$why" ]; then
    [ "$want" = auto ] || die "real node required (DATAJOB_REAL_NODE=$want) but: $why"
    REAL_NODE=0
    REAL_NODE_WHY="$why; install with: apt-get install $REAL_NODE_PACKAGES"
    log "real node: SKIPPED ($REAL_NODE_WHY); only kwok nodes"
    return 0
  fi
  REAL_NODE=1
  REAL_NODE_WHY=""
}

# Ports, bridge and subnet must be free (another cluster may use the defaults).
realnode_check_free() {
  local p prefix
  for p in "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$REGISTRY_PORT"; do
    port_busy "$p" && die "port $p (real node) is already in use (set DATAJOB_KUBELET_PORT, DATAJOB_KUBELET_HEALTHZ_PORT, DATAJOB_REGISTRY_PORT or DATAJOB_REAL_NODE=0)"
  done
  [ ${#CNI_BRIDGE} -le 15 ] || die "DATAJOB_CNI_BRIDGE '$CNI_BRIDGE' is longer than 15 characters"
  ip link show "$CNI_BRIDGE" >/dev/null 2>&1 && die "network interface $CNI_BRIDGE exists already (another cluster? set DATAJOB_CNI_BRIDGE and DATAJOB_POD_SUBNET)"
  case "$REAL_POD_SUBNET" in *.0/24) ;; *) die "DATAJOB_POD_SUBNET must be a /24 like 10.245.0.0/24 (got $REAL_POD_SUBNET)" ;; esac
  prefix=${REAL_POD_SUBNET%.0/24}
  if ip -4 -o addr show | awk '{print $4}' | grep -q "^${prefix//./\\.}\."; then
    die "pod subnet $REAL_POD_SUBNET is already used by an interface here (set DATAJOB_POD_SUBNET)"
  fi
}

# The images (e2e/image/build.sh) and crane (e2e/tools.sh), both cached.
realnode_build() {
  IMAGES_DIR=$(bash "$HERE/image/build.sh" | tail -n 1)
  [ -f "$IMAGES_DIR/images.env" ] || die "e2e/image/build.sh failed"
  # shellcheck disable=SC1091
  . "$IMAGES_DIR/images.env"
  TOOLS_BIN=$(bash "$HERE/tools.sh" | tail -n 1)
  [ -x "$TOOLS_BIN/crane" ] || die "e2e/tools.sh did not produce crane"
  IMAGE_NONROOT="$REGISTRY/$BUSYBOX_NONROOT_REPO:$BUSYBOX_TAG"
  IMAGE_ROOT="$REGISTRY/$BUSYBOX_ROOT_REPO:$BUSYBOX_TAG"
}

# Certificates, kubeconfig and config files; the cgroup subtree.
realnode_configure() {
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

  # the kubelet's client identity (Node authorizer + NodeRestriction) ...
  sign_cert kubelet "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" "$client"
  # ... its serving certificate (the apiserver verifies it with the cluster CA) ...
  sign_cert kubelet-serving "/CN=system:node:$REAL_NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$REAL_NODE_IP,IP:127.0.0.1,DNS:localhost,DNS:$REAL_NODE_NAME"
  write_kubeconfig "$DIR/kubelet.kubeconfig" kubelet

  mkdir -p "$CD_DIR/certs.d/$REGISTRY" "$DIR/cni/net.d" "$DIR/kubelet" "$DIR/registry"
  cat >"$CD_DIR/config.toml" <<EOF
# containerd of the real node (written by e2e/cluster.sh up)
version = 2
root = "$CD_DIR/root"
state = "$CD_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD_DIR/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # the kubelet flag is gone: the sandbox image is containerd's; imported at up
  sandbox_image = "$PAUSE_IMAGE"
  # network namespaces under the state dir (not /var/run/netns), so down finds them
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # this VM gives root no CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (the
  # kubelet asks -998 for sandboxes), so never below containerd's own
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$CD_DIR/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$DIR/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CD_DIR/certs.d"
EOF
  # the local registry speaks plain HTTP
  cat >"$CD_DIR/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
  # no ipMasq and no portmap: the plugins add no iptables rules
  cat >"$DIR/cni/net.d/10-datajob.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "datajob-real",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$REAL_POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/ipam"
      }
    }
  ]
}
EOF
  cat >"$DIR/kubelet/config.yaml" <<EOF
# kubelet of the real node (written by e2e/cluster.sh up)
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# this VM has cgroup v1; kubelet >= 1.35 refuses it unless told otherwise (KEP-5573)
failCgroupV1: false
address: $REAL_NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $DIR/pki/kubelet-serving.crt
tlsPrivateKeyFile: $DIR/pki/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
    cacheTTL: 10s
  x509:
    clientCAFile: $DIR/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 10s
    cacheUnauthorizedTTL: 5s
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
cgroupsPerQOS: true
failSwapOn: false
clusterDomain: cluster.local
# no DNS service runs; an address keeps the kubelet from warning on every pod
clusterDNS: [10.96.0.10]
resolvConf: /etc/resolv.conf
podLogsDir: $DIR/pod-logs
maxPods: 50
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
evictionPressureTransitionPeriod: 10s
kubeAPIQPS: 50
kubeAPIBurst: 100
registerWithTaints:
- key: $REAL_NODE_LABEL
  value: "true"
  effect: NoSchedule
EOF
  realnode_cgroups_create
  # the CNI bridge, now rather than at the first pod: it carries the node IP
  ip link add "$CNI_BRIDGE" type bridge
  ip addr add "$REAL_NODE_IP/24" dev "$CNI_BRIDGE"
  ip link set "$CNI_BRIDGE" up
}

# cgroup root of the kubelet: must exist in every v1 hierarchy (and the unified one).
realnode_cgroups_create() {
  local h
  for h in /sys/fs/cgroup/*/; do
    h=${h%/}
    [ -e "$h/cgroup.procs" ] || continue
    mkdir -p "$h$CGROUP_ROOT"
    case "$h" in
      */cpuset|*/cpuset,*)
        cat "$h/cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
        cat "$h/cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems" ;;
    esac
  done
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then mkdir -p "/sys/fs/cgroup$CGROUP_ROOT"; fi
}

realnode_start_early() {
  launch registry "$TOOLS_BIN/crane" registry serve --address "$REGISTRY" --disk "$DIR/registry"
  launch containerd containerd --config "$CD_DIR/config.toml"
}

ctr_() { timeout 20 ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
registry_up() { curl -sf --max-time 2 "http://$REGISTRY/v2/" >/dev/null; }

# While the apiserver starts: the pause image into containerd, the busybox images into
# the registry (the kubelet pulls them from there, for real).
realnode_load_images() {
  wait_until "containerd" ctr_ version
  ctr_ images import "$IMAGES_DIR/pause.tar" >/dev/null
  wait_until "registry" registry_up
  registry_push "$IMAGES_DIR/busybox-nonroot.tar" "$IMAGE_NONROOT"
  registry_push "$IMAGES_DIR/busybox-root.tar" "$IMAGE_ROOT"
}
# push an oci.sh archive as its OCI layout (a directory): the registry then serves the
# very manifest (and digest) of the archive; `crane push FILE` would convert it to
# Docker media types
registry_push() {
  local d="$DIR/tmp/push-${2##*/}"
  mkdir -p "$d" && tar -xf "$1" -C "$d"
  "$TOOLS_BIN/crane" push "$d" "$2" >"$DIR/logs/push.log" 2>&1 || { cat "$DIR/logs/push.log" >&2; die "crane push $2 failed"; }
  rm -rf "$d"
}

# After the apiserver answers.
realnode_start_kubelet() {
  launch kubelet "$BIN/kubelet" \
    --config="$DIR/kubelet/config.yaml" \
    --kubeconfig="$DIR/kubelet.kubeconfig" \
    --root-dir="$DIR/kubelet/root" \
    --cert-dir="$DIR/pki/kubelet-generated" \
    --hostname-override="$REAL_NODE_NAME" \
    --node-ip="$REAL_NODE_IP" \
    --node-labels="$REAL_NODE_LABEL=true" \
    --v=1
}

# Ready=True and no taint but ours (kcm removes node.kubernetes.io/not-ready).
real_node_ready() {
  local out
  out=$("$KUBECTL" get node "$REAL_NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {range .spec.taints[*]}{.key},{end}') || return 1
  [ "$out" = "True $REAL_NODE_LABEL," ]
}

realnode_env_lines() {
  cat <<EOF
REAL_NODE=$REAL_NODE
REAL_NODE_WHY="$REAL_NODE_WHY"
REAL_NODE_NAME=$REAL_NODE_NAME
KUBELET_PORT=$KUBELET_PORT
KUBELET_HEALTHZ_PORT=$KUBELET_HEALTHZ_PORT
REGISTRY_PORT=$REGISTRY_PORT
REGISTRY=$REGISTRY
CNI_BRIDGE=$CNI_BRIDGE
REAL_POD_SUBNET=$REAL_POD_SUBNET
CGROUP_ROOT=$CGROUP_ROOT
CNI_BIN_DIR=$CNI_BIN_DIR
CONTAINERD_SOCK=$CONTAINERD_SOCK
REAL_NODE_IP=$REAL_NODE_IP
EOF
  if [ "$REAL_NODE" = 1 ]; then
    cat <<EOF
IMAGE_NONROOT=$IMAGE_NONROOT
IMAGE_ROOT=$IMAGE_ROOT
PAUSE_IMAGE=$PAUSE_IMAGE
EOF
  fi
}

# --- down ---------------------------------------------------------------------------------
# Pod processes: every task through containerd (so the shims exit by themselves), then
# whatever is still in our cgroup subtree.
realnode_kill_pods() {
  local id ids
  if live_pid containerd >/dev/null && ids=$(ctr_ tasks ls -q 2>/dev/null); then
    for id in $ids; do ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    for id in $ids; do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
  fi
  realnode_cgroups_kill
}

cgroup_procs() {
  local h d
  for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
    d=$h$CGROUP_ROOT
    [ -d "$d" ] || continue
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -u
}
realnode_cgroups_kill() {
  case "${CGROUP_ROOT:-}" in /datajob-?*) ;; *) return 0 ;; esac
  local pids
  for _ in $(seq 1 50); do
    pids=$(cgroup_procs)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  log "WARNING: processes left in cgroup $CGROUP_ROOT: $(cgroup_procs | tr '\n' ' ')"
}
realnode_cgroups_remove() {
  case "${CGROUP_ROOT:-}" in /datajob-?*) ;; *) return 0 ;; esac
  local h d
  for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
    d=$h$CGROUP_ROOT
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ -d "$d" ] && log "WARNING: could not remove cgroup $d"
  done
  return 0
}

# unix socket paths a process listens on (for shim sockets in /run/containerd/s)
unix_sockets_of() {
  local inodes
  inodes=$(find "/proc/$1/fd" -type l -printf '%l\n' 2>/dev/null | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | sort -u)
  [ -n "$inodes" ] || return 0
  awk -v list=" $(echo "$inodes" | tr '\n' ' ') " 'NR > 1 && $8 != "" && index(list, " " $7 " ") {print $8}' /proc/net/unix | sed 's/^@.*//' | sort -u
}

# containerd shims of this cluster that outlived containerd (their command line names
# our containerd socket); never by process name alone.
realnode_kill_shims() {
  local p f pids="" socks=""
  while read -r f; do
    p=${f%/cmdline}
    case "$(tr '\0' ' ' 2>/dev/null <"$f")" in
      *containerd-shim*) pids="$pids ${p#/proc/}" ;;
    esac
  done < <(grep -lsF -- "$CONTAINERD_SOCK" /proc/[0-9]*/cmdline)
  [ -n "$pids" ] || return 0
  log "killing leftover containerd shims:$pids"
  for p in $pids; do socks="$socks $(unix_sockets_of "$p" | tr '\n' ' ')"; done
  # shellcheck disable=SC2086
  stop_pids 2 $pids
  for p in $socks; do case "$p" in /run/containerd/s/*) rm -f "$p" ;; esac; done
}

# every mount below $DIR (kubelet's rshared root dir and pod volumes, containerd's
# rootfs/shm/netns), deepest first, until none is left
realnode_unmount_all() {
  local m mounts
  for _ in 1 2 3 4 5; do
    mounts=$(awk -v d="$DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r -u)
    [ -n "$mounts" ] || return 0
    for m in $mounts; do
      m=$(printf '%b' "$m")
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
  log "WARNING: still mounted under $DIR: $(awk -v d="$DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | tr '\n' ' ')"
}

realnode_network_cleanup() {
  local v
  [ -n "${CNI_BRIDGE:-}" ] || return 0
  if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
    for v in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link delete "$v" 2>/dev/null || true
    done
    ip link delete "$CNI_BRIDGE" 2>/dev/null || log "WARNING: could not delete bridge $CNI_BRIDGE"
  fi
}

# Is another kubelet running on this machine (another cluster's real node)?
other_kubelet_alive() {
  local p
  # shellcheck disable=SC2012  # ls -l shows where each exe link points, in one process
  for p in $(ls -l /proc/[0-9]*/exe 2>/dev/null | awk '$NF ~ /\/kubelet$/ {print $(NF-2)}'); do
    p=${p#/proc/}; p=${p%/exe}
    alive "$p" && return 0
  done
  return 1
}

# The kubelet creates these iptables chains (and a KUBE-FIREWALL rule that drops
# non-local sources to 127.0.0.0/8) whatever its configuration, and the directory
# /var/log/containers. They are shared by every kubelet of the machine: removed only
# when no other kubelet runs (one that does would notice its canary chain gone and
# create the chains again anyway).
realnode_iptables_cleanup() {
  local ipt t
  other_kubelet_alive && { log "another kubelet runs here: leaving the KUBE-* iptables chains to it"; return 0; }
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null 2>&1 || continue
    while "$ipt" -w -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while "$ipt" -w -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    # each chain may be gone already (set -e: a failed removal is not an error here)
    { "$ipt" -w -F KUBE-FIREWALL && "$ipt" -w -X KUBE-FIREWALL; } 2>/dev/null || true
    for t in mangle filter nat; do
      { "$ipt" -w -t "$t" -F KUBE-KUBELET-CANARY && "$ipt" -w -t "$t" -X KUBE-KUBELET-CANARY; } 2>/dev/null || true
    done
    "$ipt" -w -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null || true
  done
  # the kubelet's (hard-wired) /var/log/containers, when empty: no kubelet needs it now
  rmdir /var/log/containers 2>/dev/null
  return 0
}

# after the processes are gone: nothing mounted, no bridge, no cgroups, no log links
realnode_sweep() {
  [ -n "${CONTAINERD_SOCK:-}" ] && realnode_kill_shims
  realnode_cgroups_kill
  realnode_unmount_all
  realnode_network_cleanup
  realnode_cgroups_remove
  if [ -d /var/log/containers ]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$DIR/*" -delete 2>/dev/null || true
  fi
  realnode_iptables_cleanup
}
