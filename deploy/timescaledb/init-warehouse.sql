-- Runs once, when the warehouse volume is first initialised (POSTGRES_DB is the current database).
-- The ingest creates its hypertables when the extension is present, plain tables otherwise.
CREATE EXTENSION IF NOT EXISTS timescaledb;
