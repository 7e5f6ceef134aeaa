# shellcheck shell=bash
# Shared helpers for the integration service scripts (kafka.sh,
# clickhouse.sh, up.sh, down.sh). Source it; do not run it.
#
# Environment:
#   SLUICE_STATE_DIR  where services keep jars, data, logs and pid files
#                     (default: <repo>/.state, git-ignored)
#   SLUICE_TLS_DIR    the test certificates the services' TLS ports serve
#                     (default: $SLUICE_STATE_DIR/tls; see ensure_test_certs)

INTEGRATION_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INTEGRATION_DIR/.." && pwd)"
SLUICE_STATE_DIR="${SLUICE_STATE_DIR:-$REPO_ROOT/.state}"
export SLUICE_STATE_DIR
SLUICE_TLS_DIR="${SLUICE_TLS_DIR:-$SLUICE_STATE_DIR/tls}"
export SLUICE_TLS_DIR

# log MSG... : one short progress line on stderr, prefixed by the service name.
log() { printf '[%s] %s\n' "${SERVICE_NAME:-integration}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# port_open PORT : true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_cmd_matches PID NEEDLE : true when PID is alive and its command line
# contains NEEDLE (guards against a recycled pid from a stale pid file).
pid_cmd_matches() {
  local pid=$1 needle=$2
  local cmd
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$needle"* ]]
}

# read_pid PIDFILE : print the pid stored in PIDFILE (empty when none).
read_pid() {
  [[ -f $1 ]] || return 0
  tr -dc '0-9' <"$1"
}

# running PIDFILE NEEDLE : true when the pid in PIDFILE is alive and is ours.
running() {
  local pid
  pid=$(read_pid "$1")
  pid_cmd_matches "$pid" "$2"
}

# stop_pid PIDFILE NEEDLE TIMEOUT_S : TERM the pid from PIDFILE, wait up to
# TIMEOUT_S seconds, then KILL. Only that pid is signalled, never by name.
stop_pid() {
  local pidfile=$1 needle=$2 timeout=${3:-30} pid
  pid=$(read_pid "$pidfile")
  if [[ -z $pid ]]; then
    log "not running (no pid file)"
    rm -f "$pidfile"
    return 0
  fi
  if ! pid_cmd_matches "$pid" "$needle"; then
    log "not running (stale pid file, pid $pid is gone or not ours)"
    rm -f "$pidfile"
    return 0
  fi
  log "stopping pid $pid (TERM)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$needle" $((timeout * 10)); then
    log "pid $pid still alive after ${timeout}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" "$needle" 50 || true
  fi
  rm -f "$pidfile"
  log "stopped"
}

# wait_gone PID NEEDLE TENTHS : wait up to TENTHS tenths of a second for
# the pid to be gone; fails if it is still there.
wait_gone() {
  local pid=$1 needle=$2 tenths=$3 i
  for ((i = 0; i < tenths; i++)); do
    pid_cmd_matches "$pid" "$needle" || return 0
    sleep 0.1
  done
  ! pid_cmd_matches "$pid" "$needle"
}

# kill9_pid PIDFILE NEEDLE : SIGKILL the pid from PIDFILE (a crash, for the
# fault tests: no shutdown of any kind), wait until it is gone, drop the
# pid file. Only that pid is signalled, never by name.
kill9_pid() {
  local pidfile=$1 needle=$2 pid
  pid=$(read_pid "$pidfile")
  if [[ -z $pid ]] || ! pid_cmd_matches "$pid" "$needle"; then
    log "not running"
    rm -f "$pidfile"
    return 0
  fi
  log "killing pid $pid (KILL)"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" "$needle" 100 || log "pid $pid still there 10s after KILL"
  rm -f "$pidfile"
  log "killed"
}

# tail_log FILE [N] : show the last N lines of FILE on stderr.
tail_log() {
  local f=$1 n=${2:-40}
  if [[ -f $f ]]; then
    log "last $n lines of $f:"
    tail -n "$n" "$f" >&2 || true
  fi
}

# ensure_test_certs : make sure $SLUICE_TLS_DIR holds the test CA, the
# server certificate (127.0.0.1, localhost) and a client certificate
# (integration/certgen: Go's crypto/x509; kept while valid, so running
# servers and earlier test runs keep trusting the same CA). Needs go.
ensure_test_certs() {
  command -v go >/dev/null 2>&1 || die "go not found: it makes the test certificates (integration/certgen)"
  (cd "$REPO_ROOT" && go run ./integration/certgen -dir "$SLUICE_TLS_DIR") || die "integration/certgen failed"
}
