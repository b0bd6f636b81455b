# Go >= GO_MIN on the PATH, for building the local control plane (e2e/build.sh), helm
# and the other Go tools. Sourced by .ci/run and e2e/demo.sh (`ensure_go`), which then
# have it on their PATH (and GOTOOLCHAIN=local).
#
# The one on the PATH when it is new enough; else the go command fetches the toolchain
# from its module proxy (Go >= 1.21 does it itself with GOTOOLCHAIN); else the toolchain
# zip from the proxy that `go env GOPROXY` names (Debian's Go is older). With no Go at
# all, Debian's golang-go is installed first (apt-get, as root or with sudo), only to
# learn the module proxy. Fetched toolchains are cached in ~/.cache/datajob.
# shellcheck shell=bash
GO_MIN=${GO_MIN:-1.26}
GO_FETCH=${GO_FETCH:-1.26.8} # what is fetched when there is no Go >= GO_MIN

go_version() { GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//'; }
go_new_enough() { [ "$(printf '%s\n%s\n' "$GO_MIN" "$1" | sort -V | head -n 1)" = "$GO_MIN" ]; }
go_ok() { command -v go >/dev/null 2>&1 && go_new_enough "$(go_version)"; }

# Puts Go >= GO_MIN on the PATH, or says why not and returns 1.
ensure_go() {
  local sudo="" root mod gobin arch proxy
  [ "$(id -u)" = 0 ] || sudo=sudo
  go_ok && return 0
  # A toolchain fetched before.
  for gobin in "$HOME"/.cache/datajob/go-"$GO_FETCH"/golang.org/toolchain@*/bin; do
    if [ -x "$gobin/go" ]; then
      export PATH=$gobin:$PATH GOTOOLCHAIN=local
      go_ok && return 0
    fi
  done
  if ! command -v go >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { log "no Go >= $GO_MIN and no apt-get: install Go $GO_MIN or newer"; return 1; }
    log "no Go: apt-get install golang-go, to learn the module proxy and fetch Go $GO_FETCH through it"
    export DEBIAN_FRONTEND=noninteractive
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq golang-go >/dev/null; } || return 1
  fi
  root=$HOME/.cache/datajob/go-$GO_FETCH
  # Go >= 1.21 fetches the named toolchain itself; an older one ignores GOTOOLCHAIN.
  if GOTOOLCHAIN=go$GO_FETCH go version 2>/dev/null | grep -q "go$GO_FETCH "; then
    gobin=$(GOTOOLCHAIN=go$GO_FETCH go env GOROOT)/bin
  else
    case "$(uname -m)" in
      x86_64) arch=amd64 ;;
      aarch64 | arm64) arch=arm64 ;;
      *) log "no Go >= $GO_MIN and no toolchain for $(uname -m)"; return 1 ;;
    esac
    mod=golang.org/toolchain@v0.0.1-go$GO_FETCH.linux-$arch
    if [ ! -x "$root/$mod/bin/go" ]; then
      proxy=$(go env GOPROXY | tr ',|' '\n\n' | grep -E '^https?://' | head -n 1)
      [ -n "$proxy" ] || { log "go env GOPROXY names no proxy to fetch Go $GO_FETCH from; install Go >= $GO_MIN"; return 1; }
      log "fetching Go $GO_FETCH from the module proxy ($proxy)"
      rm -rf "$root" && mkdir -p "$root"
      curl -fsSL "${proxy%/}/golang.org/toolchain/@v/v0.0.1-go$GO_FETCH.linux-$arch.zip" -o "$root/go.zip" || return 1
      unzip -q "$root/go.zip" -d "$root" && rm -f "$root/go.zip"
      chmod +x "$root/$mod/bin/"* "$root/$mod/pkg/tool/"*/*
    fi
    gobin=$root/$mod/bin
  fi
  export PATH=$gobin:$PATH GOTOOLCHAIN=local
  go_ok || { log "Go $GO_FETCH from the module proxy does not run"; return 1; }
}
