-- Trades resampled to quarter hours, from their minute rows (trades_1m), kept up to date by
-- QuestDB after each refresh of trades_1m. Candles of 15 and 30 minutes from trades in UTC
-- read it (with the cut ends of a range from the trades themselves): a month of 30-minute
-- candles is 2,880 rows a pair instead of 43,200. Columns as in trades_1m, so trade_count
-- adds up to the trades table's row count when the view is caught up (api/views.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS trades_15m AS (
    SELECT ts, symbol, first(open) AS open, max(high) AS high, min(low) AS low,
        last(close) AS close, sum(volume) AS volume, sum(turnover) AS turnover,
        sum(trade_count) AS trade_count
    FROM trades_1m
    SAMPLE BY 15m
) PARTITION BY MONTH
