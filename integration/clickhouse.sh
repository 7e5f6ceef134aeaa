#!/usr/bin/env bash
# Real ClickHouse server (Debian package clickhouse-server, 18.16 on bookworm)
# for integration tests, with private config/data/logs under the state dir,
# listening on 127.0.0.1 only.
#
# Usage: integration/clickhouse.sh {start|stop|status|reset|restart|kill9|install}
#
# Environment:
#   SLUICE_STATE_DIR       state root (default <repo>/.state)
#   CLICKHOUSE_TCP_PORT    native protocol port (default 9000)
#   CLICKHOUSE_HTTP_PORT   HTTP port (default 8123)
#   CLICKHOUSE_TCP_SECURE_PORT  native protocol over TLS (tcp_port_secure,
#                          default 9440), serving the certificate of
#                          ensure_test_certs (common.sh)
#   CLICKHOUSE_LOG_LEVEL   server log level (default information)
#   CLICKHOUSE_START_TIMEOUT  seconds to wait for readiness (default 60)
#   CLICKHOUSE_VOLUME_SIZE size of the journaled ext4 image the data goes
#                          on when the state dir is on ext4 without a
#                          journal (default 12G, sparse; see data_volume
#                          in common.sh); 0 keeps the data in the state
#                          dir whatever its filesystem
#   CLICKHOUSE_RUN_AS      run the server as this user (e.g. clickhouse, the
#                          package's user; the state dir is chown'ed to it).
#                          Default: the current user; 18.16 runs fine as root.
set -euo pipefail

SERVICE_NAME=clickhouse
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

CH_TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
CH_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
CH_TCP_SECURE_PORT="${CLICKHOUSE_TCP_SECURE_PORT:-9440}"
CH_LOG_LEVEL="${CLICKHOUSE_LOG_LEVEL:-information}"
CH_START_TIMEOUT="${CLICKHOUSE_START_TIMEOUT:-60}"

CH_DIR="$SLUICE_STATE_DIR/clickhouse"
CH_CONF_DIR="$CH_DIR/etc"
CH_CONF="$CH_CONF_DIR/config.xml"
CH_USERS="$CH_CONF_DIR/users.xml"
CH_TLS="$CH_CONF_DIR/tls"
CH_DATA="$CH_DIR/data"
# Where the data goes instead when the state dir is on ext4 without a
# journal (data_volume in common.sh): a journaled image mounted here.
CH_VOLUME="$CH_DIR/volume"
CH_IMAGE="$CH_DIR/volume.img"
CH_IMAGE_SIZE="${CLICKHOUSE_VOLUME_SIZE:-12G}"
CH_LOGS="$CH_DIR/logs"
CH_PIDFILE="$CH_DIR/clickhouse.pid"
CH_STDOUT="$CH_LOGS/stdout.log"
# Our server's command line contains this; used to check a pid is ours.
CH_NEEDLE="--config-file=$CH_CONF"

SYSTEM_CONF_DIR=/etc/clickhouse-server

install_clickhouse() {
  if command -v clickhouse-server >/dev/null 2>&1 && command -v clickhouse-client >/dev/null 2>&1 \
    && [[ -f $SYSTEM_CONF_DIR/config.xml ]]; then
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die "clickhouse-server is not installed and we are not root; run: sudo apt-get install -y clickhouse-server clickhouse-client"
  log "installing clickhouse-server and clickhouse-client from apt"
  # The package's postinst runs 'invoke-rc.d clickhouse-server start'. Deny
  # service starts for the duration of the install (policy-rc.d exit 101),
  # unless the machine already has a policy-rc.d of its own.
  local own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from sluice integration/clickhouse.sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q clickhouse-server clickhouse-client >"$CH_LOGS/apt-install.log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    log "apt-get install failed; running apt-get update and retrying"
    rc=0
    { apt-get update -q && apt-get install -y -q clickhouse-server clickhouse-client; } >>"$CH_LOGS/apt-install.log" 2>&1 || rc=$?
  fi
  if [[ $own_policy -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
  if [[ $rc -ne 0 ]]; then
    tail_log "$CH_LOGS/apt-install.log" 30
    die "apt-get install clickhouse-server clickhouse-client failed"
  fi
  stop_system_clickhouse
  log "installed: $(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || echo '?')"
}

# If the package's own service got started anyway (e.g. by an init script on a
# machine without a policy-rc.d), stop it through its own pid file so it does
# not hold 9000/8123. Never kills by process name.
stop_system_clickhouse() {
  local pidfile pid
  for pidfile in /var/run/clickhouse-server.pid /run/clickhouse-server.pid /var/run/clickhouse-server/clickhouse-server.pid; do
    pid=$(read_pid "$pidfile")
    if pid_cmd_matches "$pid" "$SYSTEM_CONF_DIR/config.xml"; then
      log "stopping the system-wide clickhouse-server (pid $pid from $pidfile)"
      if [[ -x /etc/init.d/clickhouse-server ]]; then
        /etc/init.d/clickhouse-server stop >/dev/null 2>&1 || true
      fi
      if pid_cmd_matches "$pid" "$SYSTEM_CONF_DIR/config.xml"; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 2
        if pid_cmd_matches "$pid" "$SYSTEM_CONF_DIR/config.xml"; then
          kill -KILL "$pid" 2>/dev/null || true
        fi
      fi
    fi
  done
}

# Write our private users.xml: the package's, with what the default profile
# needs added. input_format_skip_unknown_fields=1 lets the Kafka table engine
# (make bench, case c) read JSON orders whose `items` array it has no column
# for; it only affects JSON/TSKV input, which Sluice never sends. Idempotent:
# the file is replaced (atomically) only when its content changes, and a
# running 18.16 server reloads users.xml by itself within seconds.
write_users() {
  mkdir -p "$CH_CONF_DIR"
  python3 - "$SYSTEM_CONF_DIR/users.xml" "$CH_USERS" <<'PY'
import os
import sys
import xml.etree.ElementTree as ET

src, dst = sys.argv[1:3]
tree = ET.parse(src)
root = tree.getroot()
profiles = root.find("profiles")
if profiles is None:
    profiles = ET.SubElement(root, "profiles")
default = profiles.find("default")
if default is None:
    default = ET.SubElement(profiles, "default")
for tag, text in (("input_format_skip_unknown_fields", "1"),):
    el = default.find(tag)
    if el is None:
        el = ET.SubElement(default, tag)
    el.text = text
new = ET.tostring(root, encoding="utf-8", xml_declaration=True)
try:
    with open(dst, "rb") as f:
        if f.read() == new:
            sys.exit(0)
except FileNotFoundError:
    pass
tmp = dst + ".tmp"
with open(tmp, "wb") as f:
    f.write(new)
os.replace(tmp, dst)
PY
}

# The secure port's certificate and key, copied from $SLUICE_TLS_DIR into
# our config directory (CLICKHOUSE_RUN_AS chowns that one).
copy_certs() {
  ensure_test_certs
  mkdir -p "$CH_TLS"
  install -m 644 "$SLUICE_TLS_DIR/server.pem" "$CH_TLS/server.pem"
  install -m 600 "$SLUICE_TLS_DIR/server.key" "$CH_TLS/server.key"
}

# Write our private config.xml / users.xml, derived from the package's files.
write_config() {
  mkdir -p "$CH_CONF_DIR" "$CH_DATA" "$CH_LOGS"
  write_users
  copy_certs
  python3 - "$SYSTEM_CONF_DIR/config.xml" "$CH_CONF" "$CH_DATA" "$CH_LOGS" "$CH_USERS" \
    "$CH_TCP_PORT" "$CH_HTTP_PORT" "$CH_LOG_LEVEL" "$CH_TCP_SECURE_PORT" "$CH_TLS" <<'PY'
import sys
import xml.etree.ElementTree as ET

src, dst, data, logs, users, tcp_port, http_port, level, secure_port, tls_dir = sys.argv[1:11]
tree = ET.parse(src)
root = tree.getroot()

def put(parent, tag, text):
    el = parent.find(tag)
    if el is None:
        el = ET.SubElement(parent, tag)
    el.text = text
    return el

def drop(parent, tag):
    for el in parent.findall(tag):
        parent.remove(el)

logger = root.find("logger")
if logger is None:
    logger = ET.SubElement(root, "logger")
put(logger, "level", level)
put(logger, "log", f"{logs}/clickhouse-server.log")
put(logger, "errorlog", f"{logs}/clickhouse-server.err.log")
put(logger, "size", "100M")
put(logger, "count", "3")
drop(logger, "console")

# Loopback only, our ports only.
drop(root, "listen_host")
ET.SubElement(root, "listen_host").text = "127.0.0.1"
put(root, "tcp_port", tcp_port)
put(root, "http_port", http_port)
put(root, "tcp_port_secure", secure_port)
for tag in ("https_port", "interserver_http_port",
            "interserver_https_port", "interserver_http_host",
            "mysql_port", "postgresql_port", "grpc_port",
            "prometheus", "graphite"):
    drop(root, tag)

# The secure native port's TLS: the test certificate; clients are not
# asked for one. No dhParamsFile: the package's points at a file it does
# not ship, and ECDHE needs none.
ossl = root.find("openSSL")
if ossl is None:
    ossl = ET.SubElement(root, "openSSL")
server = ossl.find("server")
if server is None:
    server = ET.SubElement(ossl, "server")
put(server, "certificateFile", f"{tls_dir}/server.pem")
put(server, "privateKeyFile", f"{tls_dir}/server.key")
drop(server, "dhParamsFile")
put(server, "verificationMode", "none")
put(server, "loadDefaultCAFile", "false")
put(server, "cacheSessions", "true")
put(server, "disableProtocols", "sslv2,sslv3,tlsv1,tlsv1_1")
put(server, "preferServerCiphers", "true")

# Private data directories.
put(root, "path", f"{data}/")
put(root, "tmp_path", f"{data}/tmp/")
put(root, "user_files_path", f"{data}/user_files/")
put(root, "format_schema_path", f"{data}/format_schemas/")
put(root, "users_config", users)

# Modest caches for a test box (limits, not preallocations).
put(root, "mark_cache_size", str(512 * 1024 * 1024))
put(root, "uncompressed_cache_size", str(1024 * 1024 * 1024))

tree.write(dst, encoding="utf-8", xml_declaration=True)
PY
}

# Command prefix that drops to CLICKHOUSE_RUN_AS (setpriv execs, so the pid
# we record stays the server's own pid).
ch_exec_prefix() {
  if [[ -n ${CLICKHOUSE_RUN_AS:-} && ${CLICKHOUSE_RUN_AS} != "$(id -un)" ]]; then
    chown -R "$CLICKHOUSE_RUN_AS:" "$CH_DIR"
    printf '%s\n' setpriv "--reuid=$CLICKHOUSE_RUN_AS" "--regid=$(id -gn "$CLICKHOUSE_RUN_AS")" --init-groups
  fi
}

# Users the integration tests log in as, in users.d/ beside our users.xml
# (the server merges the directory into it and reloads both by itself
# within seconds, also while it runs). Loopback only, no password, like the
# package's default user:
#   sluice_lowmem  max_memory_usage 100 MB per query, so that a test can make
#                  large INSERTs fail with 241 MEMORY_LIMIT_EXCEEDED
#                  (integration/pressure_test.go).
#   sluice_secure  password secure-test-password (stored as its SHA-256),
#                  for the TLS and password tests (integration/security_test.go).
# Idempotent: the file is replaced (atomically) only when its content changes.
write_test_users() {
  local dir="$CH_CONF_DIR/users.d"
  local file="$dir/sluice-tests.xml"
  local want secure_sha
  secure_sha=$(printf '%s' 'secure-test-password' | sha256sum | cut -d' ' -f1)
  want=$(cat <<XML
<?xml version="1.0"?>
<!-- Written by integration/clickhouse.sh: users of the integration tests. -->
<yandex>
  <profiles>
    <sluice_lowmem>
      <max_memory_usage>100000000</max_memory_usage>
    </sluice_lowmem>
  </profiles>
  <users>
    <sluice_lowmem>
      <password></password>
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>
      </networks>
      <profile>sluice_lowmem</profile>
      <quota>default</quota>
    </sluice_lowmem>
    <sluice_secure>
      <password_sha256_hex>${secure_sha}</password_sha256_hex>
      <networks>
        <ip>127.0.0.1</ip>
        <ip>::1</ip>
      </networks>
      <profile>default</profile>
      <quota>default</quota>
    </sluice_secure>
  </users>
</yandex>
XML
)
  mkdir -p "$dir"
  if [[ -f $file && $(<"$file") == "$want" ]]; then
    return 0
  fi
  printf '%s\n' "$want" >"$file.tmp"
  mv -f "$file.tmp" "$file"
}

ch_ready() {
  clickhouse-client --host 127.0.0.1 --port "$CH_TCP_PORT" -q 'SELECT 1' >/dev/null 2>&1
}

do_start() {
  mkdir -p "$CH_LOGS"
  install_clickhouse
  write_test_users # before the start, or live into a running server
  if running "$CH_PIDFILE" "$CH_NEEDLE"; then
    # A server started before a users.xml setting was added gets it live.
    write_users
    log "already running (pid $(read_pid "$CH_PIDFILE"), tcp 127.0.0.1:$CH_TCP_PORT, http 127.0.0.1:$CH_HTTP_PORT)"
    if ! grep -q '<tcp_port_secure>' "$CH_CONF" 2>/dev/null; then
      log "WARNING: this server was started without its secure port (tcp_port_secure); '$0 restart' adds it"
    fi
    return 0
  fi
  rm -f "$CH_PIDFILE"
  stop_system_clickhouse
  local p
  for p in "$CH_TCP_PORT" "$CH_HTTP_PORT" "$CH_TCP_SECURE_PORT"; do
    if port_open "$p"; then
      die "port 127.0.0.1:$p is already in use (not by the server of this state dir); set CLICKHOUSE_TCP_PORT/CLICKHOUSE_HTTP_PORT/CLICKHOUSE_TCP_SECURE_PORT or stop it"
    fi
  done
  if [[ $CH_IMAGE_SIZE != 0 ]] && data_volume "$CH_VOLUME" "$CH_IMAGE" "$CH_IMAGE_SIZE"; then
    CH_DATA="$CH_VOLUME/data"
  fi
  write_config
  local -a prefix=()
  mapfile -t prefix < <(ch_exec_prefix)
  log "starting clickhouse-server $(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || true) (data $CH_DATA)"
  local t0=$SECONDS
  # Own session so a Ctrl-C in the caller's terminal does not reach it.
  # Started from CH_DIR: the server writes a few files into its cwd.
  (
    cd "$CH_DIR"
    exec setsid "${prefix[@]}" clickhouse-server "$CH_NEEDLE" </dev/null >"$CH_STDOUT" 2>&1
  ) &
  local pid=$!
  echo "$pid" >"$CH_PIDFILE"
  local deadline=$((SECONDS + CH_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail_log "$CH_STDOUT" 20
      tail_log "$CH_LOGS/clickhouse-server.err.log" 40
      rm -f "$CH_PIDFILE"
      die "clickhouse-server exited during startup"
    fi
    if ch_ready && port_open "$CH_TCP_SECURE_PORT"; then
      log "ready after $((SECONDS - t0))s: pid $pid, tcp 127.0.0.1:$CH_TCP_PORT, tls 127.0.0.1:$CH_TCP_SECURE_PORT, http 127.0.0.1:$CH_HTTP_PORT, version $(clickhouse-client --host 127.0.0.1 --port "$CH_TCP_PORT" -q 'SELECT version()' 2>/dev/null)"
      return 0
    fi
    sleep 0.3
  done
  tail_log "$CH_STDOUT" 20
  tail_log "$CH_LOGS/clickhouse-server.err.log" 40
  tail_log "$CH_LOGS/clickhouse-server.log" 40
  die "clickhouse-server not ready after ${CH_START_TIMEOUT}s (pid $pid left running; use '$0 stop')"
}

do_stop() {
  stop_pid "$CH_PIDFILE" "$CH_NEEDLE" 30
  if ! running "$CH_PIDFILE" "$CH_NEEDLE"; then
    data_volume_release "$CH_VOLUME" "$CH_IMAGE"
  fi
}

do_status() {
  if running "$CH_PIDFILE" "$CH_NEEDLE"; then
    if ch_ready; then
      log "running (pid $(read_pid "$CH_PIDFILE"), tcp 127.0.0.1:$CH_TCP_PORT, http 127.0.0.1:$CH_HTTP_PORT)"
      return 0
    fi
    log "process alive (pid $(read_pid "$CH_PIDFILE")) but not answering on 127.0.0.1:$CH_TCP_PORT"
    return 1
  fi
  log "not running"
  return 3
}

do_reset() {
  do_stop
  if mountpoint -q "$CH_VOLUME"; then
    die "$CH_VOLUME is still mounted (busy?); unmount it, then reset again"
  fi
  log "deleting data and logs under $CH_DIR"
  rm -rf "$CH_DATA" "$CH_LOGS" "$CH_IMAGE"
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  reset) do_reset ;;
  restart) do_stop; do_start ;;
  kill9) kill9_pid "$CH_PIDFILE" "$CH_NEEDLE" ;;
  install) mkdir -p "$CH_LOGS"; install_clickhouse ;;
  *)
    echo "usage: $0 {start|stop|status|reset|restart|kill9|install}" >&2
    exit 2
    ;;
esac
