-- One row per XQ quote, per exchange (the feed is not a consolidated book).
CREATE TABLE IF NOT EXISTS quotes (
    ts TIMESTAMP,
    symbol SYMBOL CAPACITY 4096 CACHE,
    bid_price DOUBLE,
    bid_size DOUBLE,
    ask_price DOUBLE,
    ask_size DOUBLE,
    exchange_id INT,
    received_ts TIMESTAMP,
    ingested_ts TIMESTAMP
) TIMESTAMP(ts) PARTITION BY DAY WAL
DEDUP UPSERT KEYS(ts, symbol, exchange_id)
