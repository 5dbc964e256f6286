"""Reading InfluxDB: the v1 `/query` HTTP API and line-protocol files. No Dagster here.

- `settings.py`: where a server is (`InfluxSettings`) and who reads (`Credentials`).
- `client.py`: `InfluxClient`, the server reader; `connection.py` its HTTP requests and
  retries; `wire.py` the msgpack/JSON/CSV response formats; `influxql.py` the query text.
- `source.py`: `LineProtocolSource`, the files reader; `files.py` reads one file,
  `parser.py` and `line_protocol.py` parse its lines.
- `filters.py`: `TagFilter`, the one meaning of a `tags:` filter for both readers.
- `errors.py`: the error families of both; `model.py`: the batches both yield.
"""
