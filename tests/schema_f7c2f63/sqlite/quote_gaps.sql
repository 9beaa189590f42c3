-- Windows in which the feed may have missed quotes (see sql/questdb/quote_gaps.sql), in
-- epoch milliseconds: a gap can be shorter than the seed's whole seconds.
CREATE TABLE IF NOT EXISTS quote_gaps (
    symbol TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    PRIMARY KEY (symbol, start_ms)
);
