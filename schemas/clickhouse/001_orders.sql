-- Orders, one row per order event, enriched by the orders pipeline.
-- ORDER BY starts with the source coordinates: the offsets a batch covers,
-- read before every INSERT, touch only that range's granules. _topic_id tells
-- the incarnations of a topic apart (deleted and created again under its name).
CREATE TABLE IF NOT EXISTS {db}.orders (
    order_id          String,
    customer_id       String,
    created_at        DateTime('UTC'),
    currency          String,
    total             Decimal(18, 2),
    total_base        Nullable(Decimal(18, 2)),
    fx_rate           Nullable(Decimal(18, 8)),
    status            Enum8('CREATED' = 1, 'CONFIRMED' = 2, 'CANCELLED' = 3),
    channel           Enum8('WEB' = 1, 'MOBILE' = 2, 'STORE' = 3),
    shipping_country  String,
    item_count        UInt32,
    coupon            Nullable(String),
    customer_name     Nullable(String),
    customer_country  Nullable(String),
    customer_segment  Nullable(String),
    fraud_score       UInt16 DEFAULT 0,
    fraud_reasons     Array(String) DEFAULT emptyArrayString(),
    _topic            String,
    _partition        UInt32,
    _offset           UInt64,
    _topic_id         String DEFAULT '',
    _ingested_at      DateTime('UTC')
) ENGINE = MergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (_topic, _partition, _offset)
