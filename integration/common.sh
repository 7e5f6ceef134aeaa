# shellcheck shell=bash
# Shared helpers for the integration service scripts (kafka.sh,
# clickhouse.sh, up.sh, down.sh, and the cluster bed's zookeeper.sh and
# cluster.sh). Source it; do not run it.
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

# require_java17 WHAT : die unless $JAVA (default java) is Java 17 or newer;
# WHAT names who needs it in the message (e.g. "Kafka 4.1.1").
require_java17() {
  local what=$1 java=${JAVA:-java} v major
  command -v "$java" >/dev/null 2>&1 || die "java not found ($what needs Java 17+)"
  v=$("$java" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n1)
  major=${v%%.*}
  [[ $major == 1 ]] && major=$(echo "$v" | cut -d. -f2)
  if [[ $major =~ ^[0-9]+$ ]] && ((major < 17)); then
    die "java $v found; $what needs Java 17+"
  fi
}

# maven_fetch POM LIB_DIR KEY NAME MAIN_JAR : make LIB_DIR hold the runtime
# dependencies of POM (mvn dependency:copy-dependencies from Maven Central).
# Fetched once: LIB_DIR/.sluice-<pom's directory>-runtime records KEY (e.g.
# kafka=4.1.1) and the pom's hash, so a changed pom refetches and later calls
# stay offline. NAME (e.g. "Kafka 4.1.1") is for the messages; MAIN_JAR (a
# file name) must be among the jars. The new set replaces LIB_DIR in one
# rename.
maven_fetch() {
  local pom=$1 lib=$2 key=$3 name=$4 main_jar=$5
  local marker want
  marker="$lib/.sluice-$(basename "$(dirname "$pom")")-runtime"
  want=$(printf '%s pom-sha256=%s\n' "$key" "$(sha256sum "$pom" | cut -d' ' -f1)")
  if [[ -f $marker && $(cat "$marker") == "$want" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to fetch the $name jars into $lib"
  log "fetching $name jars from Maven Central into $lib (once)"
  mkdir -p "$(dirname "$lib")"
  local tmp t0=$SECONDS
  tmp=$(mktemp -d "$(dirname "$lib")/.lib.tmp.XXXXXX")
  if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >"$tmp.mvn.log" 2>&1; then
    tail_log "$tmp.mvn.log" 40
    rm -rf "$tmp" "$tmp.mvn.log"
    die "mvn dependency:copy-dependencies failed"
  fi
  rm -f "$tmp.mvn.log"
  ls "$tmp/$main_jar" >/dev/null 2>&1 || die "$main_jar missing after mvn"
  rm -rf "$lib"
  mv "$tmp" "$lib"
  echo "$want" >"$marker"
  local jars=("$lib"/*.jar)
  log "fetched ${#jars[@]} jars in $((SECONDS - t0))s"
}

# kafka_api_versions_ok PORT : a real Kafka protocol round trip with the
# broker on 127.0.0.1:PORT: ApiVersions v0 request, expect a response with
# our correlation id (1) and error code 0.
kafka_api_versions_ok() {
  local out
  # shellcheck disable=SC2016 # $1 expands in the inner shell
  out=$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x01\x00\x05probe" >&3
    head -c 10 <&3 | od -An -tx1 | tr -d " \n"
  ' _ "$1" 2>/dev/null) || return 1
  # 4-byte size, correlation id 1, error code 0
  [[ ${#out} -eq 20 && ${out:8} == "000000010000" ]]
}

# spawn PIDFILE DIR OUT CMD... : start CMD in its own session (so a Ctrl-C
# in the caller's terminal does not reach it) from directory DIR, stdin
# from /dev/null, stdout and stderr to OUT, and record its pid in PIDFILE.
# The pid is CMD's own (setsid execs). spawn returns once the pid runs
# CMD, or has exited: until the subshell execs, the pid's command line is
# this shell's, and a caller that checks it against CMD's (pid_cmd_matches)
# would take a server still starting for one that exited (and leave it
# running, unrecorded, on its ports).
spawn() {
  local pidfile=$1 dir=$2 out=$3
  shift 3
  (
    cd "$dir" || exit 1
    exec setsid "$@" </dev/null >"$out" 2>&1
  ) &
  local pid=$! self i
  echo "$pid" >"$pidfile"
  self=$(tr '\0' ' ' <"/proc/$$/cmdline")
  for ((i = 0; i < 500; i++)); do
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == "$self" ]] || return 0
    sleep 0.01
  done
  log "WARNING: pid $pid has not started $1 after 5s"
}

# Journaled data volume. On ext4 without a journal (this machine class's
# root filesystem), every new inode is checked against the recently
# deleted ones (the kernel's recently_deleted(), only without a journal),
# so a server that creates and deletes many small files pays for each
# create in proportion to the deletes before it: perf put 70 % of
# clickhouse-server's CPU there during INSERTs (a MergeTree part is ~56
# files). Production servers run on journaled filesystems.
# data_volume DIR IMAGE SIZE: when DIR's filesystem is ext4 without a
# journal, mount a journaled ext4 image (IMAGE, created SIZE sparse) at DIR
# and say so; elsewhere, or where loop mounts are not allowed, leave DIR as
# it is (with a warning in the latter case). Idempotent. Returns 0 when DIR
# is (now) the volume's mount point.
data_volume() {
  local dir=$1 image=$2 size=$3
  mkdir -p "$dir"
  if mountpoint -q "$dir"; then
    return 0
  fi
  local src fstype majmin dev
  read -r src fstype majmin < <(findmnt -n -o SOURCE,FSTYPE,MAJ:MIN --target "$dir") || return 1
  [[ $fstype == ext4 ]] || return 1 # not ext4: nothing to work around
  # The journal's entry is named after the kernel's block device (dm-0,
  # vda), which SOURCE need not be (LVM, /dev/root, a bind mount).
  dev=$(basename "$(readlink -f "/sys/dev/block/${majmin// /}")")
  if [[ -z $dev || -d /proc/fs/jbd2/$dev-8 ]]; then
    return 1 # journaled (or not to be told): nothing to work around
  fi
  if [[ -n $(ls -A "$dir") ]]; then
    log "WARNING: $dir is on ext4 without a journal and not empty; not mounting a journaled volume over it ('$0 reset' clears it)"
    return 1
  fi
  if [[ ! -f $image ]]; then
    truncate -s "$size" "$image" && mkfs.ext4 -q -F "$image" || { rm -f "$image"; log "WARNING: cannot make a journaled ext4 image at $image; $dir stays on ext4 without a journal"; return 1; }
  fi
  if ! mount -o loop "$image" "$dir" 2>/dev/null; then
    log "WARNING: cannot loop-mount $image (not root, or no loop devices); $dir stays on ext4 without a journal, where each new file costs the server CPU"
    return 1
  fi
  log "mounted a journaled ext4 volume ($image, $size) at $dir: $src is ext4 without a journal"
  return 0
}

# data_volume_release DIR IMAGE: unmount DIR when it is IMAGE's mount
# (its loop device backed by IMAGE), and nothing else.
data_volume_release() {
  local dir=$1 image=$2 dev
  mountpoint -q "$dir" || return 0
  dev=$(findmnt -n -o SOURCE --target "$dir")
  if [[ -f $image && $(losetup -n -O BACK-FILE "$dev" 2>/dev/null) == "$(realpath "$image")" ]]; then
    umount "$dir" || log "WARNING: $dir still mounted (busy?)"
  fi
}
