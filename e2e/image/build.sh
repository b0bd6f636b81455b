#!/usr/bin/env bash
# Build the images of the real e2e node, with no container daemon (e2e/image/oci.sh):
#   pause.tar            the pod sandbox image: a static C pause (pause.c, gcc -static)
#   busybox-nonroot.tar  Debian's busybox-static + applet links, USER 65532:65532, HOME=/tmp
#   busybox-root.tar     the same, no USER (runs as root, like most public images)
# Into $DATAJOB_CACHE/images-busybox-<debian version>-<hash of these sources>/, once;
# a second run with the same inputs does nothing. Writes images.env there (the image
# references, repository paths without a registry) and prints the directory on its
# last line.
#
# Needs: busybox-static (/bin/busybox), gcc + libc6-dev (static libc), jq, GNU tar.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${DATAJOB_CACHE:-$HOME/.cache/datajob}
log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

BUSYBOX=${DATAJOB_BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static)"
file_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }
file_static "$BUSYBOX" || die "$BUSYBOX is not statically linked (install busybox-static, not busybox)"
BB_VERSION=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true)
BB_VERSION=${BB_VERSION#*:}                              # drop the epoch
[ -n "$BB_VERSION" ] || BB_VERSION=$("$BUSYBOX" 2>&1 | sed -n '1s/^BusyBox v\([^ ]*\).*/\1/p')
BB_TAG=${BB_VERSION%%-*}                                 # 1.35.0-4+deb12u1+b1 -> 1.35.0
SRC_HASH=$(cat "$HERE/oci.sh" "$HERE/pause.c" "$0" | sha256sum | cut -c1-10)
OUT="$CACHE/images-busybox-${BB_VERSION}-${SRC_HASH}"
if [ -f "$OUT/.complete" ]; then echo "$OUT"; exit 0; fi

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT"

# --- pause ------------------------------------------------------------------------
log "pause (gcc -static)"
mkdir -p "$W/pause"
gcc -static -Os -s -o "$W/pause/pause" "$HERE/pause.c" || die "gcc -static failed (apt-get install gcc libc6-dev)"
chmod 0755 "$W/pause/pause"
bash "$HERE/oci.sh" --rootfs "$W/pause" --ref localhost/datajob/pause:1 --out "$OUT/pause.tar" \
  --user 65535:65535 --entrypoint '["/pause"]' >/dev/null

# --- busybox rootfs -----------------------------------------------------------------
log "busybox $BB_VERSION"
R="$W/bb"
umask 022
mkdir -p "$R/bin" "$R/etc" "$R/root" "$R/dev" "$R/proc" "$R/sys" "$R/var"
install -m 0755 "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list-full); do
  [ "$a" = bin/busybox ] && continue
  mkdir -p "$R/$(dirname "$a")"
  ln -sf /bin/busybox "$R/$a"
done
mkdir -p "$R/tmp" && chmod 1777 "$R/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\nnobody:x:65534:\n' >"$R/etc/group"
chmod 0700 "$R/root"
PATHS=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

bash "$HERE/oci.sh" --rootfs "$R" --ref "datajob/busybox-nonroot:$BB_TAG" --out "$OUT/busybox-nonroot.tar" \
  --user 65532:65532 --env "$PATHS" --env HOME=/tmp --workdir /tmp --cmd '["sh"]' >/dev/null
bash "$HERE/oci.sh" --rootfs "$R" --ref "datajob/busybox-root:$BB_TAG" --out "$OUT/busybox-root.tar" \
  --env "$PATHS" --env HOME=/root --cmd '["sh"]' >/dev/null

cat >"$OUT/images.env" <<EOF
# written by e2e/image/build.sh; references without a registry host
PAUSE_IMAGE=localhost/datajob/pause:1
BUSYBOX_NONROOT_REPO=datajob/busybox-nonroot
BUSYBOX_ROOT_REPO=datajob/busybox-root
BUSYBOX_TAG=$BB_TAG
EOF
touch "$OUT/.complete"
log "images in $OUT"
echo "$OUT"
