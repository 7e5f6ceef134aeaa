#!/usr/bin/env bash
# The demo behind `make demo`: with Kafka and ClickHouse up (make up) and the
# binaries built (make build), create the tables, generate e-commerce events,
# run Sluice in the background, wait until the events are loaded, and print
# where to look. Sluice keeps running (new events load within a second);
# `make down` stops it with the services.
#
# Environment: DEMO_ORDERS (default 20000), DEMO_RATE (events/s, default 0 =
# as fast as possible), DEMO_SEED (default 1).
set -euo pipefail
SERVICE_NAME=demo
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

cd "$REPO_ROOT"
BIN="$REPO_ROOT/bin"
STATE="$SLUICE_STATE_DIR/sluice"
PIDFILE="$STATE/sluice.pid"
LOG="$STATE/sluice.log"
ORDERS="${DEMO_ORDERS:-20000}"
CH=(clickhouse-client --port "${CLICKHOUSE_TCP_PORT:-9000}")
mkdir -p "$STATE"

log "creating database and tables (sluice migrate)"
"$BIN/sluice" migrate -c sluice.yaml >/dev/null 2>"$STATE/migrate.log" || { cat "$STATE/migrate.log" >&2; die "migrate failed"; }

log "generating $ORDERS orders with their payments and shipments (sluice-gen)"
# Event times start now, 50 ms apart: the KPI views fill minute by minute.
# Each run is a new data set (seed), so reruns add orders, not copies.
"$BIN/sluice-gen" --count "$ORDERS" --rate "${DEMO_RATE:-0}" --seed "${DEMO_SEED:-$(date +%s)}" \
  --start now --step 50ms --customers 20000 --no-rate-ratio 0.002 --brokers "127.0.0.1:${KAFKA_PORT:-9092}"

if running "$PIDFILE" "sluice run"; then
  log "sluice already running (pid $(read_pid "$PIDFILE"))"
else
  log "starting sluice run -c sluice.yaml (log: $LOG)"
  nohup "$BIN/sluice" run -c sluice.yaml >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
fi

# Wait until the tables stop growing: every generated event is loaded.
prev=-1
for _ in $(seq 1 120); do
  sleep 1
  running "$PIDFILE" "sluice run" || { tail -20 "$LOG" >&2; die "sluice exited"; }
  now=$("${CH[@]}" -q "SELECT (SELECT count() FROM sluice.orders) + (SELECT count() FROM sluice.payments) + (SELECT count() FROM sluice.shipments)" 2>/dev/null || echo 0)
  if [[ $now -gt 0 && $now -eq $prev ]]; then break; fi
  prev=$now
done

q() { printf '\n$ clickhouse-client -q "%s"\n' "$1"; "${CH[@]}" --format PrettyCompact -q "$1"; }
q "SELECT 'orders' AS table, count() AS rows FROM sluice.orders UNION ALL SELECT 'payments', count() FROM sluice.payments UNION ALL SELECT 'shipments', count() FROM sluice.shipments"
q "SELECT order_id, created_at, currency, total, fx_rate, total_base, customer_name, customer_country, shipping_country, fraud_score, fraud_reasons FROM sluice.orders ORDER BY created_at DESC LIMIT 8"
q "SELECT arrayJoin(fraud_reasons) AS reason, count() AS orders FROM sluice.orders GROUP BY reason ORDER BY orders DESC"
q "SELECT * FROM sluice.orders_per_minute ORDER BY minute DESC LIMIT 5"
q "SELECT * FROM sluice.payment_success_rate ORDER BY minute DESC LIMIT 5"
q "SELECT status, count() AS events FROM sluice.shipments GROUP BY status ORDER BY status"
q "SELECT count() - uniqExact(_topic, _partition, _offset) AS duplicates FROM sluice.orders"

cat <<EOM

Sluice is running (pid $(read_pid "$PIDFILE")), loading new events as they arrive:
  live dashboard        http://127.0.0.1:8080/   (lag, rows/s, batch latency, dead letters, orders/min, payment success)
  metrics & health      http://127.0.0.1:8080/metrics, /healthz, /readyz
  log                   $LOG
  more events           bin/sluice-gen --count 5000 --rate 500
  query                 clickhouse-client -q "SELECT count() FROM sluice.orders"
  dead letters          bin/sluice dlq inspect -c sluice.yaml   (orders in a currency without a rate)
  stop everything       make down
EOM
