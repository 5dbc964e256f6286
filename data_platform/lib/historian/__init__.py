"""The historian model in the warehouse: a narrow value table and a signal registry.

psycopg only, no Dagster: `tables` (where the values live, their DDL), `signals` and `registry`
(stable integer ids for every measurement, tag set and field), `copy` (binary COPY rows),
`window` (atomic replacement of a window's rows) and `locks` (the platform's advisory locks).
"""
