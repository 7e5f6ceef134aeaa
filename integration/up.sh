#!/usr/bin/env bash
# Start the real integration services: ClickHouse, then Kafka.
# Idempotent: services already running are left as they are.
# Ports/paths: see clickhouse.sh and kafka.sh (CLICKHOUSE_TCP_PORT,
# CLICKHOUSE_HTTP_PORT, CLICKHOUSE_TCP_SECURE_PORT, KAFKA_PORT,
# KAFKA_CONTROLLER_PORT, KAFKA_SCRAM_PORT, KAFKA_PLAIN_PORT, KAFKA_MTLS_PORT,
# SLUICE_STATE_DIR, SLUICE_TLS_DIR).
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
printf 'export SLUICE_KAFKA_SCRAM_BROKERS=127.0.0.1:%s SLUICE_KAFKA_PLAIN_BROKERS=127.0.0.1:%s SLUICE_KAFKA_MTLS_BROKERS=127.0.0.1:%s\n' \
  "${KAFKA_SCRAM_PORT:-9094}" "${KAFKA_PLAIN_PORT:-9095}" "${KAFKA_MTLS_PORT:-9096}"
printf 'export SLUICE_CLICKHOUSE_SECURE_ADDR=127.0.0.1:%s SLUICE_TLS_DIR=%s\n' "${CLICKHOUSE_TCP_SECURE_PORT:-9440}" "$SLUICE_TLS_DIR"
