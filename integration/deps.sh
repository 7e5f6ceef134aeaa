#!/usr/bin/env bash
# Install what building and testing Sluice needs on a fresh Debian machine:
# Go modules, Java 17+ and Maven (for the Kafka broker from Maven Central),
# the ClickHouse server and client from Debian, Debian's Chromium (the
# dashboard's browser test drives it headless, integration/dashboard_browser_test.go)
# and Debian's Prometheus (the Grafana board's queries, integration/prometheus_test.go).
# Idempotent and quick when everything is already there.
set -euo pipefail
SERVICE_NAME=deps
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

need_apt=()
command -v go >/dev/null 2>&1 || die "Go is not installed: install Go 1.26+ (https://go.dev/dl) and re-run"
if ! command -v java >/dev/null 2>&1 || ! java -version 2>&1 | grep -qE 'version "(1[7-9]|2[0-9])'; then
  need_apt+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
# Prometheus evaluates the Grafana dashboard's queries (integration/prometheus_test.go).
[[ -x /usr/bin/prometheus ]] || need_apt+=(prometheus)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # RUNLEVEL=1: packages with a service (prometheus) do not start it.
  RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
"$INTEGRATION_DIR/clickhouse.sh" install
"$INTEGRATION_DIR/kafka.sh" fetch
"$INTEGRATION_DIR/zookeeper.sh" fetch # the cluster bed's (make up-cluster)
(cd "$REPO_ROOT" && go mod download)
log "ok: $(go version | cut -d' ' -f3), java $(java -version 2>&1 | head -1 | cut -d'"' -f2), $(mvn -v 2>/dev/null | head -1 | cut -d' ' -f1-3 | sed 's/\x1b\[[0-9;]*m//g'), clickhouse-server $(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null), chromium $(dpkg-query -W -f='${Version}' chromium 2>/dev/null)"
