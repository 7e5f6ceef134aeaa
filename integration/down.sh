#!/usr/bin/env bash
# Stop the integration services (Kafka, then ClickHouse). Exits 0 when a
# service was not running; non-zero only when a stop itself failed.
set -euo pipefail

SERVICE_NAME=down
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

rc=0
# A Sluice started by `make demo` goes first, so it commits and leaves the
# group while Kafka and ClickHouse are still up.
if running "$SLUICE_STATE_DIR/sluice/sluice.pid" "sluice run"; then
  log "stopping the demo's sluice"
  stop_pid "$SLUICE_STATE_DIR/sluice/sluice.pid" "sluice run" 40 || rc=1
fi
"$INTEGRATION_DIR/kafka.sh" stop || rc=1
"$INTEGRATION_DIR/clickhouse.sh" stop || rc=1
if [[ $rc -eq 0 ]]; then log "all down"; else log "some service failed to stop"; fi
exit "$rc"
