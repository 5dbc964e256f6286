"""Reading InfluxDB: the v1 `/query` HTTP API and line-protocol files. No Dagster here."""
