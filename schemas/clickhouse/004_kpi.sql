-- KPI tables for the live dashboard, filled by materialized views as
-- batches are inserted. SummingMergeTree folds rows of the same minute on
-- merge; the two plain views below aggregate, so readers never see
-- unmerged parts as separate rows.
CREATE TABLE IF NOT EXISTS {db}.kpi_orders_minute (
    minute        DateTime('UTC'),
    orders        UInt64,
    cancelled     UInt64,
    revenue_base  Decimal(38, 2)
) ENGINE = SummingMergeTree
ORDER BY minute;

-- Revenue counts orders that were not cancelled, in the base currency.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kpi_orders_minute_mv TO {db}.kpi_orders_minute AS
SELECT
    toStartOfMinute(created_at) AS minute,
    count() AS orders,
    countIf(status = 'CANCELLED') AS cancelled,
    sumIf(ifNull(total_base, toDecimal64(0, 2)), status != 'CANCELLED') AS revenue_base
FROM {db}.orders
GROUP BY minute;

CREATE TABLE IF NOT EXISTS {db}.kpi_payments_minute (
    minute     DateTime('UTC'),
    attempts   UInt64,
    successes  UInt64,
    refunds    UInt64
) ENGINE = SummingMergeTree
ORDER BY minute;

-- An attempt is AUTHORIZED, CAPTURED or FAILED; a refund is not an attempt.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kpi_payments_minute_mv TO {db}.kpi_payments_minute AS
SELECT
    toStartOfMinute(created_at) AS minute,
    countIf(status != 'REFUNDED') AS attempts,
    sum(succeeded) AS successes,
    countIf(status = 'REFUNDED') AS refunds
FROM {db}.payments
GROUP BY minute;

CREATE VIEW IF NOT EXISTS {db}.orders_per_minute AS
SELECT minute, sum(orders) AS orders, sum(cancelled) AS cancelled, sum(revenue_base) AS revenue_base
FROM {db}.kpi_orders_minute
GROUP BY minute;

CREATE VIEW IF NOT EXISTS {db}.payment_success_rate AS
SELECT minute, attempts, successes, refunds,
       if(attempts = 0, 0, successes / attempts) AS success_rate
FROM (
    SELECT minute, sum(attempts) AS attempts, sum(successes) AS successes, sum(refunds) AS refunds
    FROM {db}.kpi_payments_minute
    GROUP BY minute
)
