"""A window read into columns holds what the same window read as rows holds, per generation."""

from __future__ import annotations

import pytest

from data_platform.lib.influx.reader.model import SeriesBatch, SeriesColumns
from data_platform.lib.influx.reader.query import SeriesQuery
from data_platform.utils.local_servers import LocalInfluxd
from data_platform_tests.influx_compat.proxy import V1, V2, V3, Profile
from data_platform_tests.lib.influx.reader.support import EVERYTHING, SECOND, T0_NS, client_for

pytestmark = pytest.mark.integration


def lines() -> str:
    """Series of 300 points: floats (whole ones too, which 3.x writes as integers), integers
    of one msgpack width and of several, booleans, text in one series, and a field only every
    third point has."""
    out = []
    for i in range(300):
        t = T0_NS + i * SECOND + i % 7
        flag = str(i % 2 == 0).lower()
        out.append(f"m,host=a u={i + 0.25},p={i / 2},n={i % 100 - 20}i,ok={flag} {t}")
        text = f',s="v{i}"' if i % 3 == 0 else ""
        out.append(f"m,host=b u={-i - 0.5}{text} {t}")
        if i % 3 == 0:
            out.append(f"m,host=c u={i * 1e-3},n={i * 1000}i {t}")
        out.append(f"m,host=d u={i + 0.75},n={i % 50}i {t}")
    return "\n".join(out)


def typed_rows(batch: SeriesBatch) -> tuple:
    return (
        batch.measurement,
        batch.tags,
        batch.columns,
        [[(type(v).__name__, v) for v in row] for row in batch.rows],
    )


@pytest.mark.parametrize("profile", [V1, V2, V3], ids=lambda p: p.version)
def test_columns_hold_the_rows(
    profile: Profile, compat_proxy, influxd: LocalInfluxd, influx_db: str
) -> None:
    influxd.write_lines(influx_db, lines())
    proxy = compat_proxy(profile)
    settings = {"token": profile.token} if profile.token else {}
    query = SeriesQuery("m", EVERYTHING)
    with client_for(proxy.url, influx_db, format="msgpack", chunk_size=100, **settings) as client:
        rows = [typed_rows(b) for b in client.stream_window(query)]
        read = list(client.stream_window_columns(query))
    columns = [typed_rows(b.batch() if isinstance(b, SeriesColumns) else b) for b in read]
    assert columns == rows
    assert any(isinstance(b, SeriesColumns) for b in read)
    if profile is V3:  # whole floats come as integers: those chunks stay rows, as floats
        assert any(isinstance(b, SeriesBatch) for b in read)
