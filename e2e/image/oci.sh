#!/usr/bin/env bash
# Build a single-layer container image from a root filesystem directory, with no
# container daemon and no registry: the result is ONE tar file that is at the same time
#   * an OCI image layout (oci-layout, index.json, blobs/sha256/...)   -> `ctr images import`,
#     `podman load`, `skopeo copy oci-archive:`
#   * a docker archive (manifest.json with Config/RepoTags/Layers)     -> `crane push FILE REF`,
#     `docker load`
# (the same double layout `docker save` writes since Docker 25). `crane push FILE REF` reads
# the docker side and pushes Docker media types (a new manifest digest); to push the OCI
# manifest with the digest printed here, push the layout: `tar -xf FILE -C D; crane push D REF`.
#
#   e2e/image/oci.sh --rootfs DIR --ref NAME:TAG --out FILE.tar [options]
#
#   --rootfs DIR        the image's root filesystem (becomes the only layer)
#   --ref NAME:TAG      image reference recorded in the archive (e.g. 127.0.0.1:5000/datajob/op:dev);
#                       index.json carries it normalised as containerd names images
#                       (busybox:1 -> docker.io/library/busybox:1), manifest.json as given
#   --out FILE          the archive to write (parent dirs are created; replaced atomically)
#   --user UID[:GID]    USER; numeric, so that `runAsNonRoot` can be checked without /etc/passwd
#                       (default: none = root, like most public images)
#   --entrypoint ARGS   ENTRYPOINT; a JSON array ('["/bin/op","--flag"]') or words split on blanks
#   --cmd ARGS          CMD; same syntax
#   --env KEY=VALUE     ENV entry; repeatable (e.g. --env PATH=/bin --env HOME=/tmp)
#   --workdir DIR       WORKDIR (default: none = /)
#   --label KEY=VALUE   a config label; repeatable
#   --arch ARCH         architecture (default: the host's, as GOARCH names it: amd64, arm64)
#   --chown PATH=U:G    numeric owner of one entry of the layer (e.g. --chown tmp=65532:65532);
#                       repeatable; every other entry is 0:0
#   --no-gzip           store the layer uncompressed (default: gzip -n)
#
# Deterministic: the same rootfs (same names, contents, modes, symlinks) gives the same bytes and
# digests on every run: entries sorted by name, mtimes fixed to SOURCE_DATE_EPOCH (default 0),
# numeric owners (0:0 unless --chown), no atime/ctime, `created` = the same epoch, gzip without
# a name or time stamp. File modes are taken from the rootfs as they are: set them there.
# Hard links are stored as links; device nodes, sockets and fifos are refused.
#
# Prints the manifest digest (sha256:...) on its last line. Needs: bash, GNU tar, gzip,
# sha256sum, jq.
#
# Examples:
#   e2e/image/oci.sh --rootfs root/ --ref datajob/busybox:1 --out bb.tar \
#       --user 65532:65532 --env PATH=/bin --env HOME=/tmp --cmd '["sh"]'
#   ctr -n k8s.io images import bb.tar
#   crane push bb.tar 127.0.0.1:5000/datajob/busybox:1      # or the layout dir, see above
set -euo pipefail

die() { echo "oci.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

ROOTFS="" REF="" OUT="" USER_="" ENTRYPOINT="" CMD="" WORKDIR="" GZIP=1
HAS_ENTRYPOINT=0 HAS_CMD=0
ENVS=() LABELS=() CHOWNS=()
case "$(uname -m)" in
  x86_64) ARCH=amd64 ;; aarch64|arm64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;;
esac
while [ $# -gt 0 ]; do
  case "$1" in
    --rootfs) ROOTFS=${2:?}; shift 2 ;;
    --ref) REF=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --user) USER_=${2:?}; shift 2 ;;
    --entrypoint) ENTRYPOINT=${2?}; HAS_ENTRYPOINT=1; shift 2 ;;
    --cmd) CMD=${2?}; HAS_CMD=1; shift 2 ;;
    --env) ENVS+=("${2:?}"); shift 2 ;;
    --workdir) WORKDIR=${2:?}; shift 2 ;;
    --label) LABELS+=("${2:?}"); shift 2 ;;
    --arch) ARCH=${2:?}; shift 2 ;;
    --chown) CHOWNS+=("${2:?}"); shift 2 ;;
    --no-gzip) GZIP=0; shift ;;
    -h|--help) usage ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
if [ -z "$ROOTFS" ] || [ -z "$REF" ] || [ -z "$OUT" ]; then die "--rootfs, --ref and --out are required (see --help)"; fi
[ -d "$ROOTFS" ] || die "--rootfs $ROOTFS is not a directory"
command -v jq >/dev/null || die "jq is required (apt-get install jq)"
if [ -n "$USER_" ] && ! [[ "$USER_" =~ ^[0-9]+(:[0-9]+)?$ ]]; then
  die "--user must be numeric UID or UID:GID (got '$USER_'): kubelet's runAsNonRoot check needs a number"
fi
for e in ${ENVS[@]+"${ENVS[@]}"}; do [[ "$e" == *=* ]] || die "--env wants KEY=VALUE (got '$e')"; done
for l in ${LABELS[@]+"${LABELS[@]}"}; do [[ "$l" == *=* ]] || die "--label wants KEY=VALUE (got '$l')"; done
# tag part of the reference (after the last '/', after ':'), for org.opencontainers.image.ref.name
last=${REF##*/}
case "$last" in *:*) TAG=${last##*:} ;; *) TAG=latest; REF="$REF:latest" ;; esac
# containerd (and so the kubelet) knows images by their full name: docker.io/library/x:1
case "$REF" in
  */*) first=${REF%%/*}
       case "$first" in *.*|*:*|localhost) FULL_REF=$REF ;; *) FULL_REF=docker.io/$REF ;; esac ;;
  *) FULL_REF=docker.io/library/$REF ;;
esac
EPOCH=${SOURCE_DATE_EPOCH:-0}
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# words or JSON array -> JSON array
to_json_array() {
  local v=$1
  if [[ "$v" =~ ^[[:space:]]*\[ ]]; then
    jq -ce 'if type == "array" and all(type == "string") then . else error("not an array of strings") end' <<<"$v" \
      || die "not a JSON array of strings: $v"
  else
    set -f
    # shellcheck disable=SC2086  # word splitting (without globbing) is the documented behaviour
    set -- $v
    set +f
    jq -cn '$ARGS.positional' --args "$@"
  fi
}

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/out/blobs/sha256"

# --- the layer: a sorted, normalised tar of the rootfs ----------------------------------
ROOTFS=$(cd "$ROOTFS" && pwd)
bad=$(find "$ROOTFS" -mindepth 1 \( -type b -o -type c -o -type p -o -type s \) -print -quit)
[ -z "$bad" ] || die "device nodes, fifos and sockets are not supported in a layer: $bad"
(cd "$ROOTFS" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"$W/files"
# Owners: 0:0 for every entry; with --chown, a copy of the rootfs gets the wanted
# numeric owners and tar stores them as they are (GNU tar has no per-path owner option).
if [ ${#CHOWNS[@]} -gt 0 ]; then
  cp -a "$ROOTFS" "$W/rootfs"
  chown -R 0:0 "$W/rootfs"
  for c in "${CHOWNS[@]}"; do
    p=${c%%=*} o=${c#*=}
    p=${p#/}
    [[ "$o" =~ ^[0-9]+:[0-9]+$ ]] || die "--chown wants PATH=UID:GID (got '$c')"
    [ -e "$W/rootfs/$p" ] || [ -L "$W/rootfs/$p" ] || die "--chown: $p is not in the rootfs"
    chown -h "$o" "$W/rootfs/$p"
  done
  SRC="$W/rootfs"
  OWNER_OPTS=(--numeric-owner)
else
  SRC="$ROOTFS"
  OWNER_OPTS=(--numeric-owner --owner=0 --group=0)
fi
tar -C "$SRC" --no-recursion -T "$W/files" -cf "$W/layer.tar" \
  --format=posix --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
  --mtime="@$EPOCH" "${OWNER_OPTS[@]}"
DIFF_ID=sha256:$(sha256sum "$W/layer.tar" | cut -d' ' -f1)
if [ "$GZIP" = 1 ]; then
  gzip -n -6 <"$W/layer.tar" >"$W/layer"
  LAYER_TYPE=application/vnd.oci.image.layer.v1.tar+gzip
else
  mv "$W/layer.tar" "$W/layer"
  LAYER_TYPE=application/vnd.oci.image.layer.v1.tar
fi
rm -f "$W/layer.tar"

# store FILE -> prints "sha256:<hex> <size>" and moves it into blobs/
store() {
  local h s
  h=$(sha256sum "$1" | cut -d' ' -f1)
  s=$(stat -c %s "$1")
  mv "$1" "$W/out/blobs/sha256/$h"
  echo "sha256:$h $s"
}
read -r LAYER_DIGEST LAYER_SIZE < <(store "$W/layer")

# --- the image config ----------------------------------------------------------------
ep='null' cmd='null'
[ "$HAS_ENTRYPOINT" = 1 ] && ep=$(to_json_array "$ENTRYPOINT")
[ "$HAS_CMD" = 1 ] && cmd=$(to_json_array "$CMD")
jq -cn \
  --arg arch "$ARCH" --arg created "$CREATED" --arg user "$USER_" --arg workdir "$WORKDIR" \
  --arg diff "$DIFF_ID" --argjson ep "$ep" --argjson cmd "$cmd" \
  --argjson env "$(jq -cn '$ARGS.positional' --args ${ENVS[@]+"${ENVS[@]}"})" \
  --argjson labels "$(jq -cn '$ARGS.positional | map(capture("^(?<key>[^=]*)=(?<value>.*)$")) | from_entries' --args ${LABELS[@]+"${LABELS[@]}"})" \
  '{architecture: $arch, os: "linux", created: $created,
    config: ({}
      + (if $user != "" then {User: $user} else {} end)
      + (if ($env | length) > 0 then {Env: $env} else {} end)
      + (if $ep != null then {Entrypoint: $ep} else {} end)
      + (if $cmd != null then {Cmd: $cmd} else {} end)
      + (if $workdir != "" then {WorkingDir: $workdir} else {} end)
      + (if ($labels | length) > 0 then {Labels: $labels} else {} end)),
    rootfs: {type: "layers", diff_ids: [$diff]},
    history: [{created: $created, created_by: "e2e/image/oci.sh"}]}' >"$W/config"
read -r CONFIG_DIGEST CONFIG_SIZE < <(store "$W/config")

# --- manifest, index, docker manifest.json ---------------------------------------------
jq -cn --arg cd "$CONFIG_DIGEST" --argjson cs "$CONFIG_SIZE" \
  --arg lt "$LAYER_TYPE" --arg ld "$LAYER_DIGEST" --argjson ls "$LAYER_SIZE" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
    layers: [{mediaType: $lt, digest: $ld, size: $ls}]}' >"$W/manifest"
read -r MANIFEST_DIGEST MANIFEST_SIZE < <(store "$W/manifest")

jq -cn --arg md "$MANIFEST_DIGEST" --argjson ms "$MANIFEST_SIZE" --arg ref "$FULL_REF" --arg tag "$TAG" \
  --arg arch "$ARCH" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
      platform: {architecture: $arch, os: "linux"},
      annotations: {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $tag}}]}' \
  >"$W/out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$W/out/oci-layout"
jq -cn --arg c "blobs/sha256/${CONFIG_DIGEST#sha256:}" --arg l "blobs/sha256/${LAYER_DIGEST#sha256:}" \
  --arg ref "$REF" '[{Config: $c, RepoTags: [$ref], Layers: [$l]}]' >"$W/out/manifest.json"

# --- the archive (itself deterministic) ---------------------------------------------------
mkdir -p "$(dirname "$OUT")"
(cd "$W/out" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"$W/outfiles"
tar -C "$W/out" --no-recursion -T "$W/outfiles" -cf "$W/image.tar" \
  --format=posix --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
  --mtime="@$EPOCH" --numeric-owner --owner=0 --group=0 --mode='u+rw,go+r'
mv -f "$W/image.tar" "$OUT"
echo "oci.sh: $REF -> $OUT (layer $((LAYER_SIZE / 1024)) KiB)" >&2
echo "$MANIFEST_DIGEST"
