-- The vendor's minute bars resampled to hours, kept up to date by QuestDB (a late or corrected
-- minute bar is folded in again when it lands). Candles of an hour or more in UTC read it:
-- 720 rows for 30 days instead of 43,200. turnover = sum(vwap * volume), so vwap over any span
-- is sum(turnover) / sum(volume), as from the minute bars.
CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h AS (
    SELECT ts, symbol, first(open) AS open, max(high) AS high, min(low) AS low,
        last(close) AS close, sum(volume) AS volume, sum(vwap * volume) AS turnover,
        sum(trade_count) AS trade_count
    FROM bars_1m
    SAMPLE BY 1h
) PARTITION BY MONTH
