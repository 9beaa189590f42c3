-- Trades resampled to hours, from their minute rows (trades_1m), kept up to date by QuestDB
-- after each refresh of trades_1m. Candles of an hour or more from trades read it, with the
-- minutes at either end of a range that cuts an hour read from the trades themselves: a
-- year is 8,760 rows a pair instead of 525,600 minute rows. Columns as in trades_1m, so
-- trade_count adds up to the trades table's row count when the view is caught up (the API
-- checks that against the trades table before it trusts the view: api/views.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS trades_1h AS (
    SELECT ts, symbol, first(open) AS open, max(high) AS high, min(low) AS low,
        last(close) AS close, sum(volume) AS volume, sum(turnover) AS turnover,
        sum(trade_count) AS trade_count
    FROM trades_1m
    SAMPLE BY 1h
) PARTITION BY MONTH
