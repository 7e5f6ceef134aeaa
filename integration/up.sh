#!/usr/bin/env bash
# Start the real integration services: ClickHouse, then Kafka.
# Idempotent: services already running are left as they are.
# Ports/paths: see clickhouse.sh and kafka.sh (CLICKHOUSE_TCP_PORT,
# CLICKHOUSE_HTTP_PORT, KAFKA_PORT, KAFKA_CONTROLLER_PORT, SLUICE_STATE_DIR).
set -euo pipefail

SERVICE_NAME=up
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

t0=$SECONDS
"$INTEGRATION_DIR/clickhouse.sh" start
"$INTEGRATION_DIR/kafka.sh" start
log "all up in $((SECONDS - t0))s. For tests:"
printf 'export SLUICE_KAFKA_BROKERS=127.0.0.1:%s\n' "${KAFKA_PORT:-9092}"
printf 'export SLUICE_CLICKHOUSE_ADDR=127.0.0.1:%s\n' "${CLICKHOUSE_TCP_PORT:-9000}"
