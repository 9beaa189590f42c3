-- The seed keeps whole seconds; ts_ms (added beside its columns) keeps the event's millisecond,
-- so open, close, the latest price and the newest trades and quotes follow event order within
-- a second instead of insertion order. These indexes answer "one symbol, newest first".
CREATE INDEX IF NOT EXISTS trades_data_symbol_ts_ms ON trades_data (symbol, ts_ms);
CREATE INDEX IF NOT EXISTS quotes_symbol_ts_ms ON quotes (symbol, ts_ms);
