"""A deterministic sample plant: inverters, meters and weather, in InfluxDB line protocol.

Values are functions of the device and the timestamp, so writing the same hours twice gives the
same points (InfluxDB overwrites them) and the sample can be topped up to "now" at every start.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

NS = 1_000_000_000


@dataclass(frozen=True)
class SamplePlant:
    """One sample source: its name (= InfluxDB database) and devices."""

    name: str
    site: str
    inverters: tuple[str, ...]
    # A device that goes silent for a while (the gaps check reports it).
    silent_device: str
    silent_from_hours_ago: float = 30.0
    silent_minutes: int = 40


PLANTS = (
    SamplePlant("plant_north", "north", ("inv01", "inv02", "inv03", "inv04"), "inv03"),
    SamplePlant("plant_south", "south", ("inv11", "inv12"), "inv12", silent_from_hours_ago=20.0),
)


def _grid(start: datetime, end: datetime, step_s: int) -> Iterator[int]:
    first = math.ceil(start.timestamp() / step_s) * step_s
    t = first
    while t < end.timestamp():
        yield t
        t += step_s


def plant_lines(plant: SamplePlant, start: datetime, end: datetime) -> Iterator[str]:
    """Points of [start, end): every minute per inverter, 5 min meter, 10 min weather."""
    silent_start = end - timedelta(hours=plant.silent_from_hours_ago)
    silent_end = silent_start + timedelta(minutes=plant.silent_minutes)
    for t in _grid(start, end, 60):
        hour = (t % 86_400) / 3_600
        sun = max(0.0, math.sin((hour - 6) / 12 * math.pi))
        for i, device in enumerate(plant.inverters):
            moment = datetime.fromtimestamp(t, UTC)
            if device == plant.silent_device and silent_start <= moment < silent_end:
                continue
            power = round(250.0 * sun * (1 + 0.05 * math.sin(t / 600 + i)), 3)
            online = "true" if sun > 0 else "false"
            state = "run" if sun > 0.05 else "idle"
            code = 0 if state == "run" else 10
            yield (
                f"inverter,site={plant.site},device={device} active_power={power},"
                f'status_code={code}i,online={online},state="{state}" {t * NS}'
            )
        if t % 300 == 0:
            energy = round((t - 1_700_000_000) / 3600 * 180.0, 3)
            yield f"meter,site={plant.site},meter=main energy={energy} {t * NS}"
        if t % 600 == 0:
            temperature = round(12 + 8 * sun + 2 * math.sin(t / 7200), 2)
            yield (
                f"weather,site={plant.site} temperature={temperature},"
                f"irradiance={round(900 * sun, 1)} {t * NS}"
            )


def late_lines(plant: SamplePlant, now: datetime) -> list[str]:
    """Points that arrive after their window was first ingested (at 30 s past the minute)."""
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    lines = []
    for minute in (7, 19, 41):
        t = int((hour + timedelta(minutes=minute, seconds=30)).timestamp())
        energy = round((t - 1_700_000_000) / 3600 * 180.0, 3)
        lines.append(f"meter,site={plant.site},meter=main energy={energy} {t * NS}")
    return lines


def sample_window(now: datetime, hours: int) -> tuple[datetime, datetime]:
    end = now.replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=hours), end


def write_export_files(folder: Path, now: datetime, hours: int) -> list[Path]:
    """Write each plant as an `influx_inspect export`-style `.lp.gz` file (late points last)."""
    folder.mkdir(parents=True, exist_ok=True)
    start, end = sample_window(now, hours)
    written = []
    for plant in PLANTS:
        path = folder / f"{plant.name}.lp.gz"
        tmp = path.with_suffix(".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as out:
            out.write(f"# DDL\nCREATE DATABASE {plant.name}\n# DML\n")
            out.write(f"# CONTEXT-DATABASE: {plant.name}\n# CONTEXT-RETENTION-POLICY: autogen\n")
            for line in plant_lines(plant, start, end):
                out.write(line + "\n")
            for line in late_lines(plant, now):
                out.write(line + "\n")
        tmp.replace(path)
        written.append(path)
    return written
