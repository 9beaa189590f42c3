-- The vendor's minute bars resampled to quarter hours, kept up to date by QuestDB. Candles
-- of 15 and 30 minutes from bars in UTC read it, as hourly ones read bars_1h. Columns as in
-- bars_1h: vwap over any span is sum(turnover) / sum(volume), and bar_count adds up to
-- bars_1m's row count when the view is caught up (api/views.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS bars_15m AS (
    SELECT ts, symbol, first(open) AS open, max(high) AS high, min(low) AS low,
        last(close) AS close, sum(volume) AS volume, sum(vwap * volume) AS turnover,
        sum(trade_count) AS trade_count, count() AS bar_count
    FROM bars_1m
    SAMPLE BY 15m
) PARTITION BY MONTH
