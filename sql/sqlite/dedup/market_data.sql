-- One 1-minute bar per pair and start time; the sink upserts so a late bar replaces the first.
CREATE TABLE IF NOT EXISTS market_data_duplicates AS SELECT * FROM market_data WHERE 0;
INSERT INTO market_data_duplicates SELECT * FROM market_data
WHERE id NOT IN (SELECT max(id) FROM market_data GROUP BY symbol, timestamp);
DELETE FROM market_data WHERE id IN (SELECT id FROM market_data_duplicates);
CREATE UNIQUE INDEX market_data_dedup ON market_data (symbol, timestamp);
