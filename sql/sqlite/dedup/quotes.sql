-- The seed stores quote times in whole seconds and has no quote id, so two real quotes from one
-- exchange can share (symbol, timestamp, exchange_id). Only an exact repeat of every value is a
-- duplicate (a re-sent frame or a replayed spool batch).
CREATE TABLE IF NOT EXISTS quotes_duplicates AS SELECT * FROM quotes WHERE 0;
INSERT INTO quotes_duplicates SELECT * FROM quotes
WHERE exchange_id IS NOT NULL AND id NOT IN (
    SELECT min(id) FROM quotes
    GROUP BY symbol, timestamp, exchange_id, bid_price, bid_size, ask_price, ask_size
);
DELETE FROM quotes WHERE id IN (SELECT id FROM quotes_duplicates);
CREATE UNIQUE INDEX quotes_dedup
    ON quotes (symbol, timestamp, exchange_id, bid_price, bid_size, ask_price, ask_size);
