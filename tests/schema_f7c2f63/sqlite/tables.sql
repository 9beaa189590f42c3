-- The seed's three tables, column for column (shared/seed/LIVE_DATA_INTEGRATION.md), so that
-- a database file the seed created opens and serves unchanged. timestamp is Unix epoch seconds.
CREATE TABLE IF NOT EXISTS trades_data (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    price REAL NOT NULL,
    size REAL NOT NULL,
    side TEXT CHECK(side IN ('buy', 'sell', 'unknown')),
    exchange_id INTEGER,
    trade_id TEXT,
    conditions TEXT
);

CREATE TABLE IF NOT EXISTS quotes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    bid_price REAL NOT NULL,
    bid_size REAL NOT NULL,
    ask_price REAL NOT NULL,
    ask_size REAL NOT NULL,
    exchange_id INTEGER
);

CREATE TABLE IF NOT EXISTS market_data (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    open REAL NOT NULL,
    high REAL NOT NULL,
    low REAL NOT NULL,
    close REAL NOT NULL,
    volume REAL NOT NULL,
    vwap REAL,
    trade_count INTEGER
);

-- Every query is "one symbol, newest first" or "one symbol, a time range".
CREATE INDEX IF NOT EXISTS trades_data_symbol_ts ON trades_data (symbol, timestamp);
CREATE INDEX IF NOT EXISTS quotes_symbol_ts ON quotes (symbol, timestamp);
CREATE INDEX IF NOT EXISTS market_data_symbol_ts ON market_data (symbol, timestamp);
