-- Shipment tracking events.
CREATE TABLE IF NOT EXISTS {db}.shipments (
    shipment_id      String,
    order_id         String,
    event_time       DateTime('UTC'),
    status           Enum8('LABEL_CREATED' = 1, 'PICKED_UP' = 2, 'IN_TRANSIT' = 3, 'OUT_FOR_DELIVERY' = 4, 'DELIVERED' = 5, 'EXCEPTION' = 6, 'RETURNED' = 7),
    carrier          String,
    country          String,
    tracking_number  Nullable(String),
    _topic           String,
    _partition       UInt32,
    _offset          UInt64,
    _topic_id        String DEFAULT '',
    _ingested_at     DateTime('UTC')
) ENGINE = MergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (_topic, _partition, _offset)
