-- Payment attempts; succeeded is 1 for AUTHORIZED/CAPTURED, 0 otherwise.
CREATE TABLE IF NOT EXISTS {db}.payments (
    payment_id      String,
    order_id        String,
    created_at      DateTime('UTC'),
    method          Enum8('CARD' = 1, 'PAYPAL' = 2, 'BANK_TRANSFER' = 3, 'WALLET' = 4),
    status          Enum8('AUTHORIZED' = 1, 'CAPTURED' = 2, 'FAILED' = 3, 'REFUNDED' = 4),
    succeeded       UInt8,
    amount          Decimal(18, 2),
    currency        String,
    amount_base     Nullable(Decimal(18, 2)),
    fx_rate         Nullable(Decimal(18, 8)),
    failure_reason  Nullable(String),
    _topic          String,
    _partition      UInt32,
    _offset         UInt64,
    _topic_id       String DEFAULT '',
    _ingested_at    DateTime('UTC')
) ENGINE = MergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (_topic, _partition, _offset)
