"""InfluxDB sources: a server's v1 `/query` API or line-protocol export files."""
