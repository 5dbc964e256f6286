"""Links from every asset in the Dagster UI to the code that defines it.

Components already record where their YAML lives (`defs.yaml` and the line of the component's
`type:`); Python assets get the line of their decorator. When the Git remote and commit are
known, each local file reference becomes a permanent link,
`<repository>/blob/<commit>/<path in repository>#L<line>`; otherwise the absolute local path
stays, which is what a developer running `dg dev` wants anyway.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import quote, urlsplit

import dagster as dg

from data_platform.utils.environment_helpers import get_deployed_git_sha, get_deployed_git_url

CODE_REFERENCES_KEY = "dagster/code_references"
GIT_TIMEOUT_SECONDS = 5.0

# `git@github.com:acme/dp.git`: user, host, then a path that does not start with `//`
_SCP_LIKE_REMOTE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^@/:]+):(?!//)(?P<path>.+)$")
_BROWSABLE_SCHEMES = {"https", "http", "ssh", "git", "git+ssh", "ssh+git"}

CodeReference = dg.LocalFileCodeReference | dg.UrlCodeReference


@dataclass(frozen=True)
class GitContext:
    """Where the running code lives in source control."""

    url: str
    """Browsable repository URL without credentials or `.git`, e.g. `https://github.com/acme/dp`."""
    revision: str
    """Commit the running code was built from."""
    root: Path
    """Local directory that corresponds to the repository root, symlinks resolved."""

    def url_for(self, path: Path, line: int | None) -> str | None:
        """Permanent link to `path` at `line`, or None when `path` lies outside the repository."""
        try:
            in_repository = Path(os.path.realpath(path)).relative_to(self.root)
        except ValueError:
            return None
        blob = "-/blob" if "gitlab" in self.url else "blob"
        anchor = f"#L{line}" if line else ""
        return f"{self.url}/{blob}/{quote(self.revision)}/{quote(in_repository.as_posix())}{anchor}"


def browsable_git_url(remote: str) -> str | None:
    """The web URL of a Git remote, or None when it has none (a local path, `file://`).

    `git@github.com:acme/dp.git` and `ssh://git@github.com/acme/dp.git` become
    `https://github.com/acme/dp`; credentials (`https://user:token@host/...`), ports of SSH
    remotes, query strings and a trailing `.git` are dropped.
    """
    remote = remote.strip()
    scp_like = _SCP_LIKE_REMOTE.match(remote)
    if scp_like is not None and "://" not in remote:
        scheme, host, path = "https", scp_like["host"].lower(), scp_like["path"]
    else:
        try:
            parts = urlsplit(remote)
            port = parts.port
        except ValueError:  # malformed port or IPv6 host
            return None
        if parts.scheme.lower() not in _BROWSABLE_SCHEMES or not parts.hostname:
            return None
        scheme = "http" if parts.scheme.lower() == "http" else "https"
        host = parts.hostname
        # an http(s) port serves the web UI too; an SSH port does not
        if scheme == parts.scheme.lower() and port is not None:
            host = f"{host}:{port}"
        path = parts.path
    path = path.strip("/").removesuffix(".git").rstrip("/")
    if not path:
        return None
    return f"{scheme}://{host}/{path}"


def _run_git(directory: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _enclosing_checkout(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        try:
            if (candidate / ".git").exists():
                return candidate
        except OSError:  # an unreadable parent ends the search
            return None
    return None


def get_git_context(project_root: Path) -> GitContext | None:
    """Repository URL and commit for the code under `project_root`, or None when unknown.

    The deployment's variables (`DATA_PLATFORM_GIT_URL` / `DAGSTER_CLOUD_GIT_URL` and
    `GIT_SHA` / `DAGSTER_CLOUD_GIT_SHA`) win; whatever they leave out is read from the checkout
    (`origin` and `HEAD`). Paths are taken relative to the enclosing checkout, or to
    `project_root` in an image that ships without `.git`. Never raises.
    """
    project_root = project_root.absolute()
    remote, revision = get_deployed_git_url(), get_deployed_git_sha()
    root = _enclosing_checkout(project_root)
    if remote is None or revision is None:
        head_and_root = _run_git(project_root, "rev-parse", "HEAD", "--show-toplevel")
        if head_and_root is not None and len(head_and_root.splitlines()) == 2:
            head, toplevel = head_and_root.splitlines()
            revision = revision or head
            root = Path(toplevel)
        remote = remote or _run_git(project_root, "remote", "get-url", "origin")
    url = browsable_git_url(remote) if remote else None
    if url is None or not revision:
        return None
    return GitContext(url=url, revision=revision, root=Path(os.path.realpath(root or project_root)))


def _definition_site(assets_def: dg.AssetsDefinition) -> dg.LocalFileCodeReference | None:
    """File and decorator line of the function behind an asset built in Python."""
    computation = assets_def.computation
    if computation is None:
        return None
    node = computation.node_def
    fn: object | None
    if isinstance(node, dg.OpDefinition):
        # decorated ops keep the user's function on a wrapper
        fn = getattr(node.compute_fn, "decorated_fn", node.compute_fn)
    elif isinstance(node, dg.GraphDefinition):
        fn = node.composition_fn
    else:
        return None
    if not callable(fn):
        return None
    code = getattr(inspect.unwrap(fn), "__code__", None)
    if code is None:
        return None
    return dg.LocalFileCodeReference(
        file_path=os.path.abspath(code.co_filename), line_number=code.co_firstlineno
    )


def _linker(git: GitContext | None) -> Callable[[CodeReference], CodeReference]:
    if git is None:
        return lambda reference: reference

    @cache
    def link(path: str, line: int | None) -> str | None:
        return git.url_for(Path(path), line)

    def to_url(reference: CodeReference) -> CodeReference:
        if not isinstance(reference, dg.LocalFileCodeReference):
            return reference
        url = link(reference.file_path, reference.line_number)
        if url is None:
            return reference
        return dg.UrlCodeReference(url=url, label=reference.label)

    return to_url


def code_reference_linker(
    defs: dg.Definitions, project_root: Path
) -> Callable[[dg.AssetSpec], dg.AssetSpec]:
    """A spec mapper that puts a source link on every asset of `defs`.

    References already present (components add their YAML's) are kept; an asset built in
    Python without any gets its function's. Git is consulted once, never per asset.
    """
    definition_sites: dict[dg.AssetKey, dg.LocalFileCodeReference] = {}
    for asset in defs.assets or []:
        if isinstance(asset, dg.AssetsDefinition):
            site = _definition_site(asset)
            if site is not None:
                definition_sites.update(dict.fromkeys(asset.keys, site))
    link = _linker(get_git_context(project_root))

    def add_references(spec: dg.AssetSpec) -> dg.AssetSpec:
        existing = spec.metadata.get(CODE_REFERENCES_KEY)
        if isinstance(existing, dg.CodeReferencesMetadataValue) and existing.code_references:
            references = existing.code_references
        elif spec.key in definition_sites:
            references = [definition_sites[spec.key]]
        else:
            return spec
        return spec.replace_attributes(
            metadata={
                **spec.metadata,
                CODE_REFERENCES_KEY: dg.CodeReferencesMetadataValue(
                    code_references=[link(reference) for reference in references]
                ),
            }
        )

    return add_references


def with_code_references(defs: dg.Definitions, project_root: Path) -> dg.Definitions:
    """`defs` with a source link on every asset; nothing but asset metadata changes."""
    # selection=None maps without resolving the repository, and passes source assets through
    return defs.permissive_map_resolved_asset_specs(
        code_reference_linker(defs, project_root), selection=None
    )
