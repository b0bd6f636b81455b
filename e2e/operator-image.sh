#!/usr/bin/env bash
# `make image`: the operator's image as an OCI archive, with no container daemon.
#
# Builds the static (musl) release binary, puts it in a root filesystem with the system's
# CA bundle (for the image preflight against HTTPS registries) and packs it with
# e2e/image/oci.sh: ENTRYPOINT /datajob-operator, USER 65532:65532, nothing else (the
# same image the Dockerfile builds). Writes target/image/datajob-operator.tar (an OCI
# layout that is also a docker archive: `ctr images import`, `podman load`, `crane push`)
# and prints its path and the manifest digest.
#
# Environment: IMAGE_REF (default datajob-operator:<crate version>).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT"
TARGET=x86_64-unknown-linux-musl
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
REF=${IMAGE_REF:-datajob-operator:$version}
OUT=$ROOT/target/image/datajob-operator.tar

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "operator-image.sh: adding the Rust target $TARGET (rustup)" >&2
  rustup target add "$TARGET" >&2
fi
# ring's C and assembly parts need a C compiler for musl: Debian's musl-tools has one.
command -v musl-gcc >/dev/null 2>&1 || { echo "operator-image.sh: musl-gcc not found: apt-get install musl-tools" >&2; exit 1; }
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$TARGET" --bin datajob-operator >&2
BIN=$ROOT/target/$TARGET/release/datajob-operator
# A static binary, or the image would need a libc it does not have.
if readelf -l "$BIN" | grep -q 'INTERP'; then
  echo "operator-image.sh: $BIN is dynamically linked" >&2
  exit 1
fi

ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
install -m 0755 "$BIN" "$ROOTFS/datajob-operator"
# The system's CA bundle, so the preflight can reach HTTPS registries (nothing else).
CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA" ] || { echo "operator-image.sh: $CA not found: apt-get install ca-certificates" >&2; exit 1; }
install -D -m 0644 "$CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
digest=$(bash "$HERE/image/oci.sh" --rootfs "$ROOTFS" --ref "$REF" --out "$OUT" \
  --user 65532:65532 --entrypoint '["/datajob-operator"]' \
  --label "org.opencontainers.image.title=datajob-operator" \
  --label "org.opencontainers.image.version=$version" | tail -n 1)
echo "operator-image.sh: $REF $digest ($(du -h "$OUT" | cut -f1))" >&2
echo "$OUT"
