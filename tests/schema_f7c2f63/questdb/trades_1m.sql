-- Trades resampled to minutes, kept up to date by QuestDB as trades arrive (refreshed
-- incrementally after each WAL commit, so it lags the trades table by a moment). The API's
-- rolling-24h price statistics and candles from trades read it instead of every raw trade:
-- 1,440 rows a day per pair instead of hundreds of thousands. turnover = sum(price * size),
-- so vwap over any span is sum(turnover) / sum(volume).
CREATE MATERIALIZED VIEW IF NOT EXISTS trades_1m AS (
    SELECT ts, symbol, first(price) AS open, max(price) AS high, min(price) AS low,
        last(price) AS close, sum(size) AS volume, sum(price * size) AS turnover,
        count() AS trade_count
    FROM trades
    SAMPLE BY 1m
) PARTITION BY DAY
