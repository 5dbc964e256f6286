#!/bin/bash
# Runs once, after the image's first-start setup created the org, the bucket and the admin token.
#
# The platform reads InfluxDB through the v1 `/query` API (the same client for 1.x, 2.x and 3.x).
# On 2.x that API addresses a bucket as database/retention policy, through a DBRP mapping: map the
# setup bucket to V1_DB_NAME/V1_RP_NAME, and make it the default retention policy of that
# database so queries that name no retention policy find it.
set -euo pipefail

influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${V1_DB_NAME}" \
  --rp "${V1_RP_NAME}" \
  --default

# A read-only token for the platform, so the admin token never leaves this stack's operators.
# Its value is printed once here (`docker compose logs influxdb`); store it as INFLUX_TOKEN.
influx auth create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --read-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --description "data_platform read-only (v1 /query)" \
  --hide-headers
