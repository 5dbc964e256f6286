"""Which deployment this process runs in, and the warehouse names that follow from it.

This is the only module that reads deployment environment variables. Everything else asks it
for a decision (`get_environment`) or a name (`get_schema_for_environment`,
`get_database_for_environment`), so the rules live in one place:

| deployment | schema `raw`   | database            |
|------------|----------------|---------------------|
| prod       | `raw`          | `warehouse`         |
| staging    | `raw_staging`  | `warehouse_staging` |
| branch     | `raw_pr_123`   | `warehouse_branch`  |
| local      | `raw_alice`    | `warehouse_local`   |

Component YAML reaches the same rules through the template variables at the bottom of this
module. `template_vars_module` takes either an absolute module name or, when it starts with a
dot, a module relative to the folder holding the `defs.yaml` (`.template_vars` next to
`defs/ingest/defs.yaml` means `data_platform.defs.ingest.template_vars`). These helpers are
shared, so YAML names this module absolutely:

    type: data_platform.lib.InfluxIngestComponent
    template_vars_module: data_platform.utils.environment_helpers
    attributes:
      database: "{{ database }}"
      schema: "{{ schema_for('raw') }}"
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import unicodedata
from collections.abc import Callable
from typing import Literal, TypedDict, get_args

import dagster as dg

Deployment = Literal["local", "branch", "staging", "prod"]

DEPLOYMENTS: tuple[Deployment, ...] = get_args(Deployment)
DEFAULT_DATABASE = "warehouse"
MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated by the server."""

_HASH_CHARS = 8
_NOT_IDENTIFIER_CHARS = re.compile(r"[^a-z0-9_]+")


def to_identifier(text: str) -> str:
    """Fold `text` into a PostgreSQL identifier that never needs quoting.

    Accents are dropped (`José` -> `jose`), anything else outside `[a-z0-9_]` becomes `_`, a
    leading digit gets a `_` prefix, and names longer than 63 bytes keep their first 54
    characters plus a stable hash of the whole name, so two long names that share a prefix stay
    distinct. Text with no usable character at all (`日本`) becomes `x` plus a hash of it.
    Keywords are not escaped: SQL is always composed with `psycopg.sql.Identifier`.
    """
    if not text.strip():
        raise ValueError("cannot build an identifier from an empty name")
    ascii_text = (
        unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    )
    name = _NOT_IDENTIFIER_CHARS.sub("_", ascii_text).strip("_")
    if not name:
        return f"x{_short_hash(text)}"
    if name[0].isdigit():
        name = f"_{name}"
    if len(name) > MAX_IDENTIFIER_BYTES:
        keep = MAX_IDENTIFIER_BYTES - _HASH_CHARS - 1
        name = f"{name[:keep].rstrip('_')}_{_short_hash(name)}"
    return name


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_CHARS]


def _env(name: str) -> str | None:
    """An environment variable with surrounding blanks removed; empty counts as unset."""
    value = os.environ.get(name, "").strip()
    return value or None


def _is_dagster_plus_branch_deployment() -> bool:
    return (_env("DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT") or "").lower() in {"1", "true"}


def get_environment() -> Deployment:
    """The deployment this process belongs to.

    In order: `DATA_PLATFORM_ENV` when set (one of local, branch, staging, prod); a Dagster+
    branch deployment is `branch`; the Dagster+ deployment named `prod` is `prod`; a Dagster+
    deployment whose name contains `staging` is `staging`; any other Dagster+ full deployment
    (say `qa`) is treated like a branch, with names suffixed by its deployment name, so only the
    deployment literally called `prod` ever writes to production names; outside Dagster+ it is
    `local`.
    """
    explicit = _env("DATA_PLATFORM_ENV")
    if explicit is not None:
        for deployment in DEPLOYMENTS:
            if explicit.lower() == deployment:
                return deployment
        raise ValueError(
            f"DATA_PLATFORM_ENV={explicit!r} is not a deployment: "
            f"set it to one of {', '.join(DEPLOYMENTS)}, or unset it to detect the deployment"
        )
    if _is_dagster_plus_branch_deployment():
        return "branch"
    name = _env("DAGSTER_CLOUD_DEPLOYMENT_NAME")
    if name is None:
        return "local"
    if name.lower() == "prod":
        return "prod"
    if "staging" in name.lower():
        return "staging"
    return "branch"


def get_deployment_name() -> str:
    """The Dagster+ deployment name, or the deployment kind (e.g. `local`) outside Dagster+."""
    return _env("DAGSTER_CLOUD_DEPLOYMENT_NAME") or get_environment()


def get_branch_suffix() -> str:
    """Suffix that keeps a branch deployment's names apart, e.g. `pr_123`.

    A Dagster+ branch deployment uses its pull request id, else its Git branch, else its
    deployment name. A full deployment treated as a branch (see `get_environment`) uses its
    deployment name, since its Git variables describe whatever branch it was deployed from.
    With `DATA_PLATFORM_ENV=branch` and none of these set, the local suffix is used.
    """
    if _is_dagster_plus_branch_deployment():
        pull_request = _env("DAGSTER_CLOUD_PULL_REQUEST_ID")
        if pull_request is not None:
            return to_identifier(f"pr_{pull_request}")
        branch = _env("DAGSTER_CLOUD_GIT_BRANCH")
        if branch is not None:
            return to_identifier(branch)
    name = _env("DAGSTER_CLOUD_DEPLOYMENT_NAME")
    if name is not None:
        return to_identifier(name)
    return get_local_suffix()


def get_local_suffix() -> str:
    """Suffix for a developer's own names: `DATA_PLATFORM_SANDBOX`, else the OS user name."""
    sandbox = _env("DATA_PLATFORM_SANDBOX")
    if sandbox is not None:
        return to_identifier(sandbox)
    try:
        user = getpass.getuser().strip()
    except (KeyError, OSError):  # containers often run as a uid without a passwd entry
        user = ""
    return to_identifier(user or "dev")


def _environment_suffix(deployment: Deployment) -> str | None:
    if deployment == "prod":
        return None
    if deployment == "staging":
        return "staging"
    if deployment == "branch":
        return get_branch_suffix()
    return get_local_suffix()


def get_schema_for_environment(base: str) -> str:
    """Schema `base` as this deployment sees it: `raw`, `raw_staging`, `raw_pr_123`, `raw_alice`."""
    suffix = _environment_suffix(get_environment())
    return to_identifier(base if suffix is None else f"{base}_{suffix}")


def get_database_for_environment() -> str:
    """Database for this deployment: the base name in prod, `<base>_<deployment>` elsewhere.

    The base is `DATA_PLATFORM_DATABASE`, default `warehouse`. Databases separate deployment
    kinds and schemas separate people and pull requests: everything a pipeline reads and writes
    must share one database (PostgreSQL cannot join across databases), so developers and pull
    requests share `warehouse_local` / `warehouse_branch` and own their suffixed schemas in it,
    while a branch or laptop pointed at the production server by mistake still cannot touch
    `warehouse`.
    """
    base = _env("DATA_PLATFORM_DATABASE") or DEFAULT_DATABASE
    deployment = get_environment()
    return to_identifier(base if deployment == "prod" else f"{base}_{deployment}")


def get_deployed_git_url() -> str | None:
    """Repository the deployment came from: `DATA_PLATFORM_GIT_URL` or `DAGSTER_CLOUD_GIT_URL`."""
    return _env("DATA_PLATFORM_GIT_URL") or _env("DAGSTER_CLOUD_GIT_URL")


def get_deployed_git_sha() -> str | None:
    """Commit the deployment was built from: `GIT_SHA` or `DAGSTER_CLOUD_GIT_SHA`."""
    return _env("GIT_SHA") or _env("DAGSTER_CLOUD_GIT_SHA")


_SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


class WarehouseOptions(TypedDict, total=False):
    """Settings of the warehouse resource that a deployment may set by variable."""

    prepared_statements: bool
    connect_timeout_seconds: float
    pool_timeout_seconds: float


def get_warehouse_options() -> WarehouseOptions:
    """Warehouse connection settings from the environment (unset: the resource's defaults).

    `WAREHOUSE_PREPARED_STATEMENTS=off` behind PgBouncer in transaction mode, or an engine that
    shares one session between clients; `WAREHOUSE_CONNECT_TIMEOUT_SECONDS` and
    `WAREHOUSE_POOL_TIMEOUT_SECONDS` bound how long a step waits for the server.
    """
    options = WarehouseOptions()
    prepared = _env("WAREHOUSE_PREPARED_STATEMENTS")
    if prepared is not None:
        if prepared.lower() not in _SWITCH:
            raise ValueError(f"WAREHOUSE_PREPARED_STATEMENTS is {prepared!r}; set it to on or off")
        options["prepared_statements"] = _SWITCH[prepared.lower()]
    connect = _seconds("WAREHOUSE_CONNECT_TIMEOUT_SECONDS")
    if connect is not None:
        options["connect_timeout_seconds"] = connect
    pool = _seconds("WAREHOUSE_POOL_TIMEOUT_SECONDS")
    if pool is not None:
        options["pool_timeout_seconds"] = pool
    return options


def _seconds(variable: str) -> float | None:
    text = _env(variable)
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ValueError(f"{variable} is {text!r}; set it to a number of seconds, e.g. 5")
    return seconds


# Template variables for component YAML. Each is evaluated when a component loads; Python code
# calls the get_* functions above instead.


@dg.template_var
def schema_for() -> Callable[[str], str]:
    """`{{ schema_for('raw') }}`: the schema `raw` as this deployment names it."""
    return get_schema_for_environment


@dg.template_var
def database() -> str:
    """`{{ database }}`: this deployment's warehouse database."""
    return get_database_for_environment()


@dg.template_var
def deployment() -> Deployment:
    """`{{ deployment }}`: one of local, branch, staging, prod."""
    return get_environment()
