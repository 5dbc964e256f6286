"""The reconciliation's questions to the source: asked beside the run's windows where the
reader allows it, always the source's own answer, never waited for by a failed run."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import cast

from data_platform.lib.influx.checks import SourceStats
from data_platform.lib.influx.reader.model import FieldStats
from data_platform.lib.influx.reader.protocol import InfluxReader
from data_platform.lib.timing.window import Window

WINDOW = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC))


class CountingReader:
    """Answers window_stats after `delay_s`, recording which thread asked and when."""

    def __init__(self, *, beside: bool | None, delay_s: float = 0.0) -> None:
        if beside is not None:
            self.stats_beside_stream = beside
        self.delay_s = delay_s
        self.asked: list[tuple[str, str, float]] = []

    def window_stats(self, measurement: str, window: Window) -> dict[str, FieldStats]:
        assert window == WINDOW
        self.asked.append((measurement, threading.current_thread().name, time.monotonic()))
        time.sleep(self.delay_s)
        return {"value": FieldStats(count=len(measurement), first_ns=1, last_ns=2)}


def test_a_server_reader_is_asked_in_a_thread_as_the_run_starts() -> None:
    reader = CountingReader(beside=True, delay_s=0.2)
    started = time.monotonic()
    with SourceStats(cast(InfluxReader, reader), WINDOW, ["m1", "m22"]) as stats:
        time.sleep(0.5)  # the run writes its windows meanwhile
        waited = time.monotonic()
        assert stats.of("m22")["value"].count == 3
        assert stats.of("m1")["value"].count == 2
        # Both answers were ready: the counting overlapped the "windows".
        assert time.monotonic() - waited < 0.1
    assert [m for m, _, _ in reader.asked] == ["m1", "m22"]
    assert all(name.startswith("source-stats") for _, name, _ in reader.asked)
    assert reader.asked[0][2] - started < 0.1


def test_a_reader_without_the_promise_is_asked_when_the_check_needs_it() -> None:
    for reader in (CountingReader(beside=None), CountingReader(beside=False)):
        with SourceStats(cast(InfluxReader, reader), WINDOW, ["m1"]) as stats:
            assert reader.asked == []
            assert stats.of("m1")["value"].count == 2
        assert [(m, t) for m, t, _ in reader.asked] == [("m1", threading.current_thread().name)]


def test_a_measurement_not_asked_ahead_is_asked_then() -> None:
    reader = CountingReader(beside=True)
    with SourceStats(cast(InfluxReader, reader), WINDOW, []) as stats:
        assert stats.of("m333")["value"].count == 4
    assert [m for m, _, _ in reader.asked] == ["m333"]


def test_a_failed_run_does_not_wait_for_the_counts() -> None:
    reader = CountingReader(beside=True, delay_s=3.0)
    started = time.monotonic()
    try:
        with SourceStats(cast(InfluxReader, reader), WINDOW, ["m1", "m2"]):
            raise RuntimeError("a window failed")
    except RuntimeError:
        pass
    assert time.monotonic() - started < 1.0
    time.sleep(0.1)
    assert [m for m, _, _ in reader.asked] == ["m1"], "the queued question was cancelled"
