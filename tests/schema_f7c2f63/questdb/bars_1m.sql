-- The vendor's 1-minute bars (XA live, /v2/aggs on backfill); ts is the bar's start.
-- A late or corrected bar for the same minute replaces the earlier one (DEDUP UPSERT).
-- trade_count comes from REST backfill, or for XA bars from volume / avg_trade_size (z).
CREATE TABLE IF NOT EXISTS bars_1m (
    ts TIMESTAMP,
    symbol SYMBOL CAPACITY 4096 CACHE INDEX,
    open DOUBLE,
    high DOUBLE,
    low DOUBLE,
    close DOUBLE,
    volume DOUBLE,
    vwap DOUBLE,
    avg_trade_size DOUBLE,
    trade_count INT,
    end_ts TIMESTAMP,
    ingested_ts TIMESTAMP
) TIMESTAMP(ts) PARTITION BY DAY WAL
DEDUP UPSERT KEYS(ts, symbol)
