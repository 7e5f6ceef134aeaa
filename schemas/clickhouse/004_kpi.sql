-- KPI views for the live dashboard: plain views, computed at query time from
-- the pipelines' tables, so they always agree with what is stored. A
-- materialized view is written after its source table's parts and not
-- atomically with them: a view that fails, or a server that crashes between
-- the two, leaves the view's table without rows the source table holds, and
-- no retry can add them without loading the source rows twice. The table is
-- the truth; these views cannot diverge from it, also after `sluice dlq
-- replay`, a dropped partition or a TTL (docs/DESIGN.md, "Materialized
-- views"). A read aggregates the table (0.1-0.25 s per 10 million rows
-- here); the dashboard reuses one read for 5 s.

-- Revenue counts orders that were not cancelled, in the base currency.
CREATE VIEW IF NOT EXISTS {db}.orders_per_minute AS
SELECT
    toStartOfMinute(created_at) AS minute,
    count() AS orders,
    countIf(status = 'CANCELLED') AS cancelled,
    sumIf(ifNull(total_base, toDecimal64(0, 2)), status != 'CANCELLED') AS revenue_base
FROM {db}.orders
GROUP BY minute;

-- An attempt is AUTHORIZED, CAPTURED or FAILED; a refund is not an attempt.
CREATE VIEW IF NOT EXISTS {db}.payment_success_rate AS
SELECT minute, attempts, successes, refunds,
       if(attempts = 0, 0, successes / attempts) AS success_rate
FROM (
    SELECT
        toStartOfMinute(created_at) AS minute,
        countIf(status != 'REFUNDED') AS attempts,
        sum(succeeded) AS successes,
        countIf(status = 'REFUNDED') AS refunds
    FROM {db}.payments
    GROUP BY minute
)
