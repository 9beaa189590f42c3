-- Windows in which the feed may have missed quotes (a disconnect, the ingester not running).
-- Trades and minute bars are fetched again over REST; quotes have no history endpoint, so
-- where they are missing is recorded instead, and /health shows it. ts: the gap's start.
CREATE TABLE IF NOT EXISTS quote_gaps (
    ts TIMESTAMP,
    symbol SYMBOL CAPACITY 4096 CACHE,
    end_ts TIMESTAMP,
    ingested_ts TIMESTAMP
) TIMESTAMP(ts) PARTITION BY MONTH WAL
DEDUP UPSERT KEYS(ts, symbol)
