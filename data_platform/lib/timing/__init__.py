"""One vocabulary for time, shared by every component: windows, buckets, durations, partitions.

Nothing here imports Dagster except `partitions` (the YAML model and Dagster's definitions).
"""
