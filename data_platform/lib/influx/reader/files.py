"""Line-protocol files, plain or gzip-compressed, read one record at a time.

A record is one line, or several physical lines when a string value holds raw newlines (as
exporters write them). Comments, the export header and, with `on_error="skip"`, malformed
lines are counted in `ScanStats` instead of becoming points.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Literal

from data_platform.lib.influx.reader import line_protocol as grammar
from data_platform.lib.influx.reader.errors import LineProtocolError
from data_platform.lib.influx.reader.line_protocol import (
    MAX_RECORD_CHARS,
    Malformed,
    Point,
    located_error,
    parse_careful,
    parse_precision,
    repair_utf8,
    strip_line_end,
)
from data_platform.lib.influx.reader.parser import LineParser

OnError = Literal["fail", "skip"]


@dataclass(slots=True)
class ScanStats:
    """What reading one file met besides points."""

    lines: int = 0
    points: int = 0
    skipped_lines: int = 0
    errors: list[LineProtocolError] = field(default_factory=list)
    """The first `MAX_KEPT_ERRORS` malformed lines skipped under `on_error="skip"`."""
    databases: list[str] = field(default_factory=list)
    """Values of the export's `# CONTEXT-DATABASE:` lines, in file order."""
    retention_policies: list[str] = field(default_factory=list)
    replaced_utf8_lines: int = 0
    """Lines that were not UTF-8, read with each bad byte as U+FFFD."""

    MAX_KEPT_ERRORS = 20


def check_on_error(on_error: str) -> OnError:
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    return on_error  # type: ignore[return-value]


def iter_file_points(
    path: str | os.PathLike[str],
    *,
    precision: str = "ns",
    default_time_ns: int | None = None,
    on_error: OnError = "fail",
    stats: ScanStats | None = None,
) -> Iterator[Point]:
    """Stream the points of a line protocol file, plain or gzip-compressed (by its magic bytes).

    Points without a timestamp get `default_time_ns`, or when that is None the file's
    modification time, which stays the same on every read of an unchanged file. With
    `on_error="skip"` malformed lines are counted in `stats` instead of raising
    `LineProtocolError`. Memory does not grow with the file: lines are read one at a time.
    """
    return read_points(
        Path(path),
        LineParser(parse_precision(precision)),
        default_time_ns=default_time_ns,
        on_error=check_on_error(on_error),
        stats=stats,
    )


_GZIP_MAGIC = b"\x1f\x8b"
_DDL_STATEMENTS = ("CREATE DATABASE ", "CREATE RETENTION POLICY ")


def open_binary(path: Path) -> BinaryIO:
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    try:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    except BaseException:
        raw.close()
        raise
    return raw


def read_points(
    path: Path,
    parser: LineParser,
    *,
    default_time_ns: int | None,
    on_error: OnError,
    stats: ScanStats | None,
    measurement: str | None = None,
) -> Iterator[Point]:
    """The points of one file; with `measurement`, lines of other measurements may be skipped
    without being parsed."""
    if default_time_ns is None:
        default_time_ns = path.stat().st_mtime_ns
    # InfluxDB truncates its default time to the write's precision (points.go SetPrecision)
    default_time_ns -= default_time_ns % parser.scale
    if stats is None:
        stats = ScanStats()
    # Lines of a measurement start with its escaped name and a separator; only names with
    # `\\`, `=` or `"` can be spelled more than one way.
    prefix: tuple[str, ...] | None = None
    if measurement is not None and not any(char in measurement for char in '\\="'):
        escaped = measurement.replace(",", "\\,").replace(" ", "\\ ")
        prefix = (escaped + ",", escaped + " ")
    name = str(path)
    in_ddl = False
    points = 0
    line_no = 0
    parse = parser.parse
    handle = open_binary(path)
    try:
        numbered: Iterator[tuple[int, bytes]] | None = enumerate(handle, 1)
        while numbered is not None:
            resume: Iterator[tuple[int, bytes]] | None = None
            for line_no, raw in numbered:
                try:
                    line = raw.decode()
                    repaired = False
                except UnicodeDecodeError:
                    line = raw.decode(errors="surrogateescape")
                    repaired = True
                text = strip_line_end(line)
                if not text or text[0] in grammar.SKIPPED_FIRST:
                    text = text.lstrip(grammar.WHITESPACE)
                    if not text:
                        continue
                    if text[0] == "#":
                        in_ddl = _read_comment(text, stats, in_ddl)
                        continue
                if prefix is not None and not text.startswith(prefix) and '"' not in text:
                    continue
                try:
                    point = parse(text)
                except Malformed as exc:
                    if in_ddl or text.startswith(_DDL_STATEMENTS):
                        continue
                    if not exc.unterminated:
                        if repaired:
                            exc.reason = (
                                f"{_replaced(exc.reason)} (the line is not valid UTF-8 either)"
                            )
                            text = _replaced(text)
                        error = located_error(exc, text, name, line_no)
                        if on_error == "fail":
                            raise error from None
                        _count_skipped(stats, error)
                        continue
                    # a string value with raw newlines: join the following physical lines
                    joined = _join_record(line, numbered, parser)
                    if isinstance(joined, Point):
                        point = joined
                        repaired = True
                    else:
                        consumed, failure, record = joined
                        error = located_error(failure, record, name, line_no)
                        if on_error == "fail":
                            raise error from None
                        _count_skipped(stats, error)
                        if failure.unterminated:
                            # never closed: resume right after the line that opened it
                            resume = chain(consumed, numbered)
                            break
                        continue
                if repaired and repair_utf8(point):
                    stats.replaced_utf8_lines += 1
                if point.time_ns is None:
                    point.time_ns = default_time_ns
                points += 1
                yield point
            numbered = resume
    finally:
        handle.close()
        stats.lines += line_no
        stats.points += points


def _join_record(
    first: str, numbered: Iterator[tuple[int, bytes]], parser: LineParser
) -> Point | tuple[list[tuple[int, bytes]], Malformed, str]:
    """Append physical lines to an open string value until the record parses.

    Returns the point, or (the lines consumed, the failure, the record text) when the record
    stays malformed: unterminated up to the end of the file or `MAX_RECORD_CHARS`, or broken
    elsewhere once closed.
    """
    consumed: list[tuple[int, bytes]] = []
    record = first
    failure = Malformed(0, "unterminated string value", unterminated=True)
    while len(record) <= MAX_RECORD_CHARS:
        following = next(numbered, None)
        if following is None:
            break
        consumed.append(following)
        record += following[1].decode(errors="surrogateescape")
        text = strip_line_end(record)
        try:
            return parser.parse(text)
        except Malformed as exc:
            failure = exc
            if not exc.unterminated:
                return consumed, exc, text
    text = strip_line_end(first)
    try:
        parse_careful(text, parser.scale)
    except Malformed as exc:
        failure = exc
    return consumed, failure, text


def _read_comment(comment: str, stats: ScanStats, in_ddl: bool) -> bool:
    """Record an export header's context; returns whether the DDL section is open."""
    body = comment[1:].strip()
    if body == "DDL":
        return True
    if body == "DML":
        return False
    label, sep, value = body.partition(":")
    if sep:
        if label.strip() == "CONTEXT-DATABASE":
            stats.databases.append(value.strip())
        elif label.strip() == "CONTEXT-RETENTION-POLICY":
            stats.retention_policies.append(value.strip())
    return in_ddl


def _count_skipped(stats: ScanStats, error: LineProtocolError) -> None:
    stats.skipped_lines += 1
    if len(stats.errors) < ScanStats.MAX_KEPT_ERRORS:
        stats.errors.append(error)


def _replaced(text: str) -> str:
    """Text read with `errors="surrogateescape"`, each undecodable byte as U+FFFD."""
    return text.encode(errors="surrogateescape").decode(errors="replace")
