#!/usr/bin/env bash
# Local S3-compatible object store for the log archive's end-to-end tests: versitygw
# (Versity S3 Gateway, Apache-2.0) with its posix backend, on 127.0.0.1, one bucket
# `datajob-logs`, SigV4 auth, path-style addressing. See docs/testing.md,
# "S3-compatible store (log archive)".
#
#   e2e/s3.sh build    go install versitygw once into $DATAJOB_CACHE/versitygw-<ver>/bin
#                      (prints that path on its last line; a second run does nothing)
#   e2e/s3.sh up       build if needed, start in the background, create the bucket,
#                      wait until it answers; last lines: `export VAR=value` (eval-able)
#   e2e/s3.sh env      print those export lines again (exit 1 if not running)
#   e2e/s3.sh status   say whether it runs (exit 0 = running, 1 = not)
#   e2e/s3.sh down     stop it (TERM, KILL after 5 s), remove the state dir and its data
#
# Environment (all optional):
#   DATAJOB_CACHE       build cache      (default $HOME/.cache/datajob)
#   DATAJOB_S3_DIR      state dir        (default $DATAJOB_CACHE/s3; data in ./data)
#   DATAJOB_S3_PORT     listen port      (default: 9000, or the next free one up to 9099;
#                                         when set, that port or an error)
#   DATAJOB_UP_TIMEOUT  seconds `up` waits for readiness (default 60)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${DATAJOB_CACHE:-$HOME/.cache/datajob}
CACHE=${CACHE%/}
OUT="$CACHE/versitygw-${VERSITYGW_VERSION}"
BIN="$OUT/bin/versitygw"
DIR=${DATAJOB_S3_DIR:-$CACHE/s3}
DIR=${DIR%/}
MARKER="$DIR/.datajob-s3"
PIDFILE="$DIR/versitygw.pid"
LOGFILE="$DIR/versitygw.log"
STATE="$DIR/s3.env"
BUCKET=datajob-logs
ACCESS_KEY=datajob
SECRET_KEY=datajob-secret-key
REGION=us-east-1
# sha256 of the empty body: versitygw insists on x-amz-content-sha256 on every signed
# request, and curl 7.88's --aws-sigv4 does not add it by itself
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

log() { printf '[s3 %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# `up` failed after starting the server: stop it, so no half-started one stays behind
fail_up() {
  local pid
  if pid=$(live_pid); then kill -KILL "$pid" 2>/dev/null || true; fi
  die "$@"
}

case "$DIR" in
  ""|/|"$HOME"|/root|/home|/tmp|/usr|/etc|/var|"$CACHE") die "refusing to use DATAJOB_S3_DIR=$DIR";;
esac
check_ours() {
  if [ -d "$DIR" ] && [ ! -f "$MARKER" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    die "$DIR exists, is not empty and was not created by s3.sh; refusing to touch it"
  fi
}

# --- build ----------------------------------------------------------------------
build() {
  if [ -x "$BIN" ]; then echo "$BIN"; return 0; fi
  mkdir -p "$OUT/bin"
  # one build at a time per cache dir; the second waiter finds the binary there
  exec 8>"$OUT/.lock"
  flock 8
  if [ ! -x "$BIN" ]; then
    log "go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION (≈ 2 min cold)"
    local tmp
    tmp=$(mktemp -d "$OUT/.gobin.XXXXXX")
    # into a temp GOBIN, then renamed: an interrupted build leaves no half binary
    if ! (cd / && GOWORK=off GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS= \
          GOMAXPROCS=${GOMAXPROCS:-2} GOBIN="$tmp" go install -trimpath \
          -ldflags="-s -w -X=main.Version=$VERSITYGW_VERSION" \
          "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"); then
      rm -rf "$tmp"; die "go install versitygw failed"
    fi
    mv -f "$tmp/versitygw" "$BIN"
    rm -rf "$tmp"
  fi
  exec 8>&-
  echo "$BIN"
}

# --- process bookkeeping --------------------------------------------------------
# pid of the server if it is alive (not a zombie) AND really ours (its command line
# names our data dir; guards against pid reuse)
live_pid() {
  local pid st
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/data" || return 1
  echo "$pid"
}
port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
pick_port() {
  if [ -n "${DATAJOB_S3_PORT:-}" ]; then
    port_busy "$DATAJOB_S3_PORT" && die "DATAJOB_S3_PORT=$DATAJOB_S3_PORT is taken"
    echo "$DATAJOB_S3_PORT"; return 0
  fi
  local p
  for p in $(seq 9000 9099); do port_busy "$p" || { echo "$p"; return 0; }; done
  die "no free port in 9000-9099; set DATAJOB_S3_PORT"
}
load_state() {
  [ -f "$STATE" ] || return 1
  # shellcheck disable=SC1090
  . "$STATE"
}
print_env() {
  printf 'export DATAJOB_S3_ENDPOINT=%s\n' "$ENDPOINT"
  printf 'export DATAJOB_S3_BUCKET=%s\n' "$BUCKET"
  printf 'export AWS_ACCESS_KEY_ID=%s\n' "$ACCESS_KEY"
  printf 'export AWS_SECRET_ACCESS_KEY=%s\n' "$SECRET_KEY"
  printf 'export AWS_REGION=%s\n' "$REGION"
}
# s3 METHOD PATH [curl args...]: a SigV4-signed path-style request with an empty body;
# prints the HTTP status
s3() {
  local method=$1 path=$2; shift 2
  curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X "$method" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "$@" "$ENDPOINT$path" 2>/dev/null || echo 000
}

# --- commands -------------------------------------------------------------------
up() {
  check_ours
  if live_pid >/dev/null && load_state; then
    log "already running at $ENDPOINT (pid $(live_pid))"
    print_env; return 0
  fi
  build >/dev/null
  local port pid deadline code
  port=$(pick_port)
  ENDPOINT="http://127.0.0.1:$port"
  mkdir -p "$DIR/data"
  touch "$MARKER"
  printf 'ENDPOINT=%s\n' "$ENDPOINT" >"$STATE"
  # own session, immune to SIGHUP, stdin from /dev/null, every other inherited fd closed
  # (no caller pipe stays open); the pid is written by the process itself before exec.
  # Keys through the environment, not argv (not shown by ps).
  # shellcheck disable=SC2016  # expanded by the inner bash
  ROOT_ACCESS_KEY_ID=$ACCESS_KEY ROOT_SECRET_ACCESS_KEY=$SECRET_KEY \
  setsid nohup bash -c '
    for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"; done
    echo $$ > "$0"; exec "$@"' "$PIDFILE" \
    "$BIN" --port "127.0.0.1:$port" --region "$REGION" --health /health --quiet \
    posix "$DIR/data" </dev/null >"$LOGFILE" 2>&1 &
  for _ in $(seq 1 250); do [ -s "$PIDFILE" ] && break; sleep 0.02; done
  deadline=$(( $(date +%s) + ${DATAJOB_UP_TIMEOUT:-60} ))
  until curl -sf --max-time 2 "$ENDPOINT/health" >/dev/null 2>&1; do
    if ! live_pid >/dev/null; then
      log "versitygw exited; last lines of $LOGFILE:"; tail -n 20 "$LOGFILE" >&2 || true
      die "versitygw did not start"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail_up "timed out waiting for $ENDPOINT/health"
    sleep 0.2
  done
  pid=$(live_pid)
  # CreateBucket (200; 409 BucketAlreadyOwnedByYou when the data dir survived)
  code=$(s3 PUT "/$BUCKET")
  case "$code" in
    200|409) ;;
    *) fail_up "CreateBucket $BUCKET answered HTTP $code (see $LOGFILE)";;
  esac
  code=$(s3 GET "/$BUCKET?list-type=2&max-keys=1")
  [ "$code" = 200 ] || fail_up "ListObjectsV2 on $BUCKET answered HTTP $code"
  log "versitygw $VERSITYGW_VERSION up at $ENDPOINT (pid $pid), bucket $BUCKET, data in $DIR/data"
  print_env
}

down() {
  check_ours
  local pid
  if pid=$(live_pid); then
    log "stopping versitygw (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do live_pid >/dev/null || break; sleep 0.1; done
    if live_pid >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    if live_pid >/dev/null; then die "versitygw (pid $pid) would not stop"; fi
  else
    log "not running"
  fi
  if [ -d "$DIR" ]; then rm -rf "$DIR"; log "removed $DIR"; fi
}

status() {
  local pid
  if pid=$(live_pid) && load_state; then
    echo "running: versitygw $VERSITYGW_VERSION at $ENDPOINT (pid $pid), data in $DIR/data"
    return 0
  fi
  echo "not running"
  return 1
}

case "${1:-}" in
  build) build;;
  up) up;;
  down) down;;
  status) status;;
  env) if live_pid >/dev/null && load_state; then print_env; else die "not running"; fi;;
  *) echo "usage: $0 build|up|down|status|env" >&2; exit 2;;
esac
