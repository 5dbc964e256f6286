"""The one error type of a component's YAML settings: the field, the problem and the fix."""

from __future__ import annotations

YamlPath = tuple[str | int, ...]


def yaml_path_text(path: YamlPath) -> str:
    """`buckets[2].refresh.start_offset` for ("buckets", 2, "refresh", "start_offset")."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class SettingError(ValueError):
    """A YAML setting is invalid; the message names the field, the problem and the fix."""

    def __init__(self, path: YamlPath, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        self.location: str | None = None
        super().__init__(f"{yaml_path_text(path)}: {problem}. Fix: {fix}")

    def located(self, location: str | None) -> SettingError:
        """The same error, its message led by the defs.yaml file, line and snippet."""
        error = type(self)(self.path, self.problem, self.fix)
        if location:
            error.location = location
            error.args = (f"{location}\n{self.args[0]}",)
        return error
