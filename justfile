# data_platform tasks. `just` lists them.
set dotenv-load := true

export DAGSTER_HOME := env_var_or_default("DAGSTER_HOME", justfile_directory() / ".dagster_home")
export XDG_RUNTIME_DIR := env_var_or_default("XDG_RUNTIME_DIR", justfile_directory() / ".data/run")

default:
    @just --list

# Install the Python dependencies from uv.lock.
sync:
    uv sync --frozen --compile-bytecode

# Also install the servers the tests start (influxd, Node for the TimescaleDB engine).
sync-all: sync
    bash scripts/install-system-deps.sh

# The platform on embedded servers with sample plants, then the UI on http://127.0.0.1:3000.
demo *args: sync _home
    uv run python -m data_platform.demo up {{args}}

# The Dagster UI on the project as configured by .env (http://127.0.0.1:3000).
dev: sync _home
    uv run dg dev --host 127.0.0.1 --port 3000

# Everything CI runs: lint, types, YAML and definitions checks, the full test suite.
ci: sync-all check

check: ruff pyright check-defs test

ruff:
    uv run ruff check .
    uv run ruff format --check .

# Apply ruff's fixes and formatting.
fmt:
    uv run ruff check --fix .
    uv run ruff format .

pyright:
    uv run pyright

# Validate every defs.yaml and load the definitions with no server and no secret, with the
# Dagster shims on and off (data_platform/utils/dagster_shims/README.md).
check-defs: _home
    uv run dg check yaml
    uv run dg check defs
    DATA_PLATFORM_DAGSTER_SHIMS=off uv run dg check defs

# The test suite (args go to pytest, e.g. `just test -k ingest`).
test *args: _home
    uv run pytest {{args}}

# e.g. `just migrate "key:plant_east/* or key:rollups/*" 2025-01-01-00:00...2025-12-31-23:00`
# (README "Migrating history").
# A history backfill as one run: assets (a selection) over a range, per-partition events cut down.
migrate assets range *args: _home
    DAGSTER_EVENT_BATCH_SIZE=1000 DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1 \
        uv run dg launch --assets "{{assets}}" --partition-range "{{range}}" \
        --config-json '{"execution": {"config": {"in_process": {}}}}' {{args}}

# Regenerate syrupy snapshots after an intended change of the asset graph or DDL.
snapshot-update:
    uv run pytest data_platform_tests --snapshot-update -k snapshot

# List the components the platform offers.
components:
    uv run dg list components

# Ingest throughput against the machine's limit measured in the same run: reading, COPY into
# the historian's table, both at once; `limit ratio`, where the time goes, the TimescaleDB
# engine, a naive baseline (args e.g. `--quick`, `--repeat 5`, `--timescale off`, `--single-runs 0`).
bench-ingest *args: sync
    uv run python scripts/bench_ingest.py {{args}}

# The historian's write path alone: ~1 M values through replace_window per encoder and sending
# variant, on a table 11 windows deep (args e.g. `--runs 5`, `--history 10`).
bench-historian *args: sync
    uv run python scripts/bench_historian.py {{args}}

# Rollup refresh time over 1 vs 30 days of raw data (prints figures).
bench-aggregates: sync
    uv run python scripts/bench_aggregates.py

# `dg check defs` at 10 / 100 / 1,000 generated sources (args e.g. `--repeat 3`, `--profile`,
# `--shims off` for Dagster's own loader).
bench-load *args: sync
    uv run python scripts/bench_load.py {{args}}

# Registry cost per hourly run of a 1,000-site fleet at 1 k / 10 k / 50 k known signals
# (args e.g. `--quick`, `--runs 5`, `--profile`).
bench-fleet *args: sync
    uv run python scripts/bench_fleet.py {{args}}

# A year of a synthetic plant backfilled with its rollups in one `dg launch`, against
# single-partition launches (args e.g. `--quick`).
bench-migrate *args: sync
    uv run python scripts/bench_migrate.py {{args}}

_home:
    @mkdir -p "$DAGSTER_HOME"
    @# a runtime dir must be private (0700), or tools warn and fall back to /tmp
    @test -d "$XDG_RUNTIME_DIR" || mkdir -p -m 700 "$XDG_RUNTIME_DIR"
    @test -f "$DAGSTER_HOME/dagster.yaml" || printf 'telemetry:\n  enabled: false\n' > "$DAGSTER_HOME/dagster.yaml"
