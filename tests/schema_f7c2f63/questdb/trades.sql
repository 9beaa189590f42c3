-- One row per XT trade. ts is the exchange time (XT "t"), received_ts the time the vendor
-- received it (XT "r"), ingested_ts the time our ingester wrote it: the three feed latency figures.
-- DEDUP makes a re-sent trade (vendor double delivery, ILP retry, spool replay) an upsert.
CREATE TABLE IF NOT EXISTS trades (
    ts TIMESTAMP,
    symbol SYMBOL CAPACITY 4096 CACHE,
    side SYMBOL CAPACITY 8 CACHE,
    price DOUBLE,
    size DOUBLE,
    exchange_id INT,
    trade_id VARCHAR,
    conditions VARCHAR,
    received_ts TIMESTAMP,
    ingested_ts TIMESTAMP
) TIMESTAMP(ts) PARTITION BY DAY WAL
DEDUP UPSERT KEYS(ts, symbol, exchange_id, trade_id)
