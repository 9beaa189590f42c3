-- A trade is identified by its pair, exchange and trade id (the same keys as QuestDB's DEDUP).
-- Rows without an id (older seed rows) are never treated as duplicates: SQLite's UNIQUE lets
-- NULLs repeat. Copies already in the file are moved aside, not deleted, before the index is built.
CREATE TABLE IF NOT EXISTS trades_data_duplicates AS SELECT * FROM trades_data WHERE 0;
INSERT INTO trades_data_duplicates SELECT * FROM trades_data
WHERE trade_id IS NOT NULL AND exchange_id IS NOT NULL AND id NOT IN (
    SELECT min(id) FROM trades_data GROUP BY symbol, timestamp, exchange_id, trade_id
);
DELETE FROM trades_data WHERE id IN (SELECT id FROM trades_data_duplicates);
CREATE UNIQUE INDEX trades_data_dedup ON trades_data (symbol, timestamp, exchange_id, trade_id);
