"""Stand-ins for private Dagster functions, each with its fingerprint, upstream link and end.

README.md beside this file lists them. `switch.active()` says whether they are in use:
`DATA_PLATFORM_DAGSTER_SHIMS=off` turns them all off, and so does an installed Dagster whose
functions differ from the fingerprints in `fingerprints.py`.
"""
