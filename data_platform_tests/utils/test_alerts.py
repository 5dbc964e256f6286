"""Alert sensors against a real instance and a real local HTTP receiver (webhook and Slack API)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest

from data_platform.utils.alerts import (
    CHECK_FAILURE_SENSOR_NAME,
    RUN_FAILURE_SENSOR_NAME,
    Alert,
    AlertDeliveryError,
    LogNotifier,
    SlackNotifier,
    WebhookNotifier,
    build_alert_sensors,
    notifier_from_env,
    run_failure_alert,
)

ALERT_VARIABLES = (
    "SLACK_BOT_TOKEN",
    "SLACK_CHANNEL",
    "SLACK_API_URL",
    "ALERT_WEBHOOK_URL",
    "DAGSTER_WEBSERVER_URL",
)
SLACK_TOKEN = "xoxb-secret-token"
FAILED_PARTITION = "2024-05-01"


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers with queued statuses (then 200) and a Slack-style body."""

    url: str
    requests: list[ReceivedRequest] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.requests.append(
                ReceivedRequest("POST", self.path, dict(self.headers), self.rfile.read(length))
            )
            status = state.statuses.popleft() if state.statuses else 200
            answer = b'{"ok": true}' if status < 300 else b'{"ok": false, "error": "invalid_auth"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def dead_url() -> str:
    """A local URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def alert_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No alert destination configured."""
    for name in ALERT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


daily = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@dg.asset(partitions_def=daily)
def meter_export() -> None:
    raise ValueError("historian answered 503\nretry budget exhausted\nlast cursor 42")


@pytest.fixture(scope="module")
def failed_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [meter_export], instance=instance, partition_key=FAILED_PARTITION, raise_on_error=False
    )
    assert not result.success
    return result


def _sensor(name: str) -> dg.SensorDefinition:
    return next(sensor for sensor in build_alert_sensors() if sensor.name == name)


def _run_failure_sensor(
    instance: dg.DagsterInstance,
    failed_run: dg.ExecuteInProcessResult,
    caplog: pytest.LogCaptureFixture | None = None,
) -> None:
    """Evaluates the run-failure sensor for `failed_run`, as the daemon would."""
    context = dg.build_run_status_sensor_context(
        sensor_name=RUN_FAILURE_SENSOR_NAME,
        dagster_event=failed_run.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=failed_run.dagster_run,
    ).for_run_failure()
    if caplog is not None:
        # The sensor log is a standalone logger (it feeds the tick's log in the UI), not a
        # child of the root logger that caplog listens to.
        context.log.addHandler(caplog.handler)
    _sensor(RUN_FAILURE_SENSOR_NAME)(context)


def test_definitions_load_without_settings(alert_env: pytest.MonkeyPatch) -> None:
    sensors = build_alert_sensors()
    assert [(sensor.name, sensor.default_status) for sensor in sensors] == [
        (RUN_FAILURE_SENSOR_NAME, dg.DefaultSensorStatus.RUNNING),
        (CHECK_FAILURE_SENSOR_NAME, dg.DefaultSensorStatus.RUNNING),
    ]
    repository = dg.Definitions(sensors=sensors).get_repository_def()
    assert {sensor.name for sensor in repository.sensor_defs} == {
        RUN_FAILURE_SENSOR_NAME,
        CHECK_FAILURE_SENSOR_NAME,
    }


def test_run_failure_posts_to_webhook(
    alert_env: pytest.MonkeyPatch,
    receiver: Receiver,
    instance: dg.DagsterInstance,
    failed_run: dg.ExecuteInProcessResult,
) -> None:
    alert_env.setenv("ALERT_WEBHOOK_URL", f"{receiver.url}/hook")
    alert_env.setenv("DAGSTER_WEBSERVER_URL", "http://dagster.example:3000/")

    _run_failure_sensor(instance, failed_run)

    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    alert = request.json()
    run_id = failed_run.run_id
    job = failed_run.dagster_run.job_name
    assert alert["title"] == f"Run failed: {job}"
    assert f"Job `{job}` failed in run `{run_id}`." in alert["text"]
    assert "Step `meter_export` failed:" in alert["text"]
    assert "ValueError: historian answered 503" in alert["text"]
    assert "retry budget exhausted" in alert["text"]
    assert "DagsterExecutionStepExecutionError" not in alert["text"]
    assert f"Partition: `{FAILED_PARTITION}`" in alert["text"]
    assert f"Run: http://dagster.example:3000/runs/{run_id}" in alert["text"]
    assert alert["fields"] == {
        "job": job,
        "run_id": run_id,
        "failed_steps": "meter_export",
        "partition": FAILED_PARTITION,
        "run_url": f"http://dagster.example:3000/runs/{run_id}",
    }
    assert alert["severity"] == "ERROR"


def test_run_failure_posts_to_slack_without_leaking_the_token(
    alert_env: pytest.MonkeyPatch,
    receiver: Receiver,
    instance: dg.DagsterInstance,
    failed_run: dg.ExecuteInProcessResult,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert_env.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    alert_env.setenv("SLACK_CHANNEL", "#alerts")
    alert_env.setenv("SLACK_API_URL", f"{receiver.url}/api/")
    caplog.set_level(logging.DEBUG)

    _run_failure_sensor(instance, failed_run, caplog)

    [request] = receiver.requests
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
    message = request.json()
    assert message["channel"] == "#alerts"
    assert failed_run.run_id in message["text"]
    assert failed_run.dagster_run.job_name in message["text"]
    assert "ValueError: historian answered 503" in message["text"]
    other_headers = {k: v for k, v in request.headers.items() if k != "Authorization"}
    assert SLACK_TOKEN not in request.path + repr(other_headers) + request.body.decode()
    assert caplog.records, "the Slack client's debug log should have been captured"
    assert SLACK_TOKEN not in caplog.text


def test_slack_api_error_is_logged_without_the_token(
    alert_env: pytest.MonkeyPatch,
    receiver: Receiver,
    instance: dg.DagsterInstance,
    failed_run: dg.ExecuteInProcessResult,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert_env.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    alert_env.setenv("SLACK_CHANNEL", "#alerts")
    alert_env.setenv("SLACK_API_URL", f"{receiver.url}/api")
    receiver.statuses.append(401)
    caplog.set_level(logging.DEBUG)

    _run_failure_sensor(instance, failed_run, caplog)

    assert [request.path for request in receiver.requests] == ["/api/chat.postMessage"]
    assert "Alert not delivered to Slack channel #alerts" in caplog.text
    assert failed_run.run_id in caplog.text
    assert SLACK_TOKEN not in caplog.text


def test_run_failure_alert_for_a_partition_range_without_step_failures(
    alert_env: pytest.MonkeyPatch, failed_run: dg.ExecuteInProcessResult
) -> None:
    run = failed_run.dagster_run.with_tags(
        {
            "dagster/asset_partition_range_start": "2024-05-01",
            "dagster/asset_partition_range_end": "2024-05-07",
        }
    )

    alert = run_failure_alert(run, failed_run.get_run_failure_event(), step_failures=[])

    assert "Partition range: `2024-05-01` to `2024-05-07`" in alert.text
    assert alert.fields["partition_range"] == "2024-05-01...2024-05-07"
    # Without step failures the run's own error is quoted, below Dagster's wrapper.
    assert "ValueError: historian answered 503" in alert.text
    assert "failed_steps" not in alert.fields
    assert "run_url" not in alert.fields


def test_run_failure_without_destination_is_logged(
    alert_env: pytest.MonkeyPatch,
    instance: dg.DagsterInstance,
    failed_run: dg.ExecuteInProcessResult,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    _run_failure_sensor(instance, failed_run, caplog)

    [alert] = [record for record in caplog.records if "Run failed:" in record.getMessage()]
    assert alert.levelno == logging.ERROR
    assert failed_run.run_id in alert.getMessage()
    assert "ValueError: historian answered 503" in alert.getMessage()


def test_webhook_retries_once_after_a_server_error(
    alert_env: pytest.MonkeyPatch,
    receiver: Receiver,
    instance: dg.DagsterInstance,
    failed_run: dg.ExecuteInProcessResult,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert_env.setenv("ALERT_WEBHOOK_URL", f"{receiver.url}/hook")
    receiver.statuses.append(500)

    _run_failure_sensor(instance, failed_run, caplog)

    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert "not delivered" not in caplog.text


def test_webhook_does_not_retry_a_client_error(receiver: Receiver) -> None:
    receiver.statuses.append(404)
    notifier = WebhookNotifier(f"{receiver.url}/hook", retry_delay=0)

    with pytest.raises(AlertDeliveryError, match=r"webhook at http://127\.0\.0\.1:\d+: HTTP 404"):
        notifier.send(Alert("title", "text", {}))

    assert len(receiver.requests) == 1


def test_unreachable_webhook_is_logged_and_the_sensor_goes_on(
    alert_env: pytest.MonkeyPatch,
    dead_url: str,
    instance: dg.DagsterInstance,
    failed_run: dg.ExecuteInProcessResult,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert_env.setenv("ALERT_WEBHOOK_URL", dead_url)
    caplog.set_level(logging.INFO)

    _run_failure_sensor(instance, failed_run, caplog)

    origin = dead_url.removesuffix("/hook")
    assert f"Alert not delivered to webhook at {origin}: ConnectError" in caplog.text
    # The alert itself still reaches the log.
    assert failed_run.run_id in caplog.text


@pytest.mark.parametrize("statuses", [[], [500, 500]], ids=["delivered", "not-delivered"])
def test_webhook_secrets_stay_out_of_logs(
    statuses: list[int],
    alert_env: pytest.MonkeyPatch,
    receiver: Receiver,
    instance: dg.DagsterInstance,
    failed_run: dg.ExecuteInProcessResult,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = receiver.url.rpartition(":")[2]
    alert_env.setenv("ALERT_WEBHOOK_URL", f"http://user:pass@127.0.0.1:{port}/hook?token=abc")
    receiver.statuses.extend(statuses)
    caplog.set_level(logging.DEBUG)

    _run_failure_sensor(instance, failed_run, caplog)

    request = receiver.requests[-1]
    assert request.path == "/hook?token=abc"
    assert request.headers["Authorization"] == f"Basic {base64.b64encode(b'user:pass').decode()}"
    for secret in ("user:pass", "pass@", "token=abc", "/hook"):
        assert secret not in caplog.text
        assert secret not in request.body.decode()
    if statuses:
        assert f"Alert not delivered to webhook at http://127.0.0.1:{port}: HTTP 500" in (
            caplog.text
        )


@dg.asset
def meter_readings() -> int:
    return 3


@dg.asset_check(asset=meter_readings)
def readings_not_empty() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=meter_readings)
def readings_recent() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description="Newest reading is 3 hours old.",
        metadata={"lag_minutes": 185, "newest": "2024-05-01T09:00:00Z"},
    )


@dg.asset_check(asset=meter_readings)
def readings_in_range() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={f"sensor_{n}": n for n in range(8)},
    )


@dg.asset
def other_location_asset() -> int:
    return 0


@dg.asset_check(asset=other_location_asset)
def other_location_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False)


def test_failed_checks_alert_once_each(
    alert_env: pytest.MonkeyPatch,
    receiver: Receiver,
    dead_url: str,
    instance: dg.DagsterInstance,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert_env.setenv("ALERT_WEBHOOK_URL", f"{receiver.url}/hook")
    own_checks = [readings_not_empty, readings_recent, readings_in_range]
    code_location = dg.Definitions(assets=[meter_readings], asset_checks=own_checks)
    sensor = _sensor(CHECK_FAILURE_SENSOR_NAME)

    def tick(cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=code_location
        )
        context.log.addHandler(caplog.handler)
        result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        return result

    # The first tick starts from the end of the event log, so older runs are not replayed.
    started = tick(None)
    assert receiver.requests == []

    assert dg.materialize(
        [meter_readings, other_location_asset, *own_checks, other_location_check],
        instance=instance,
    ).success
    after_run = tick(started.cursor)

    alerts = {request.json()["fields"]["check"]: request.json() for request in receiver.requests}
    assert set(alerts) == {"readings_recent", "readings_in_range"}
    warn, error = alerts["readings_recent"], alerts["readings_in_range"]
    assert warn["severity"] == "WARN"
    assert warn["title"] == "WARN: check readings_recent failed on meter_readings"
    assert "failed with severity WARN" in warn["text"]
    assert "Newest reading is 3 hours old." in warn["text"]
    assert "lag_minutes: 185" in warn["text"]
    assert "newest: 2024-05-01T09:00:00Z" in warn["text"]
    assert error["severity"] == "ERROR"
    assert error["fields"]["asset"] == "meter_readings"
    assert "sensor_4: 4" in error["text"]
    assert "sensor_5" not in error["text"]
    assert "... and 3 more metadata entries" in error["text"]

    again = tick(after_run.cursor)
    assert len(receiver.requests) == 2
    assert again.cursor == after_run.cursor

    # Replayed against a dead webhook: one failed delivery, then both alerts go to the log.
    alert_env.setenv("ALERT_WEBHOOK_URL", dead_url)
    caplog.clear()
    replayed = tick(started.cursor)
    assert replayed.cursor == after_run.cursor
    assert caplog.text.count("Alert not delivered to webhook") == 1
    assert "WARN: check readings_recent failed on meter_readings" in caplog.text
    assert "ERROR: check readings_in_range failed on meter_readings" in caplog.text


def test_notifier_choice(alert_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("alerts-test")
    assert isinstance(notifier_from_env(log), LogNotifier)

    alert_env.setenv("ALERT_WEBHOOK_URL", "https://hooks.example/services/T0/B0/secret")
    webhook = notifier_from_env(log)
    assert isinstance(webhook, WebhookNotifier)
    assert webhook.destination == "webhook at https://hooks.example"

    alert_env.setenv("SLACK_CHANNEL", "#alerts")
    assert isinstance(notifier_from_env(log), WebhookNotifier)
    assert "Slack alerts are off: SLACK_BOT_TOKEN is not set" in caplog.text

    alert_env.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    assert isinstance(notifier_from_env(log), SlackNotifier)

    for name in ALERT_VARIABLES:
        alert_env.delenv(name, raising=False)
    alert_env.setenv("ALERT_WEBHOOK_URL", "ftp://user:secret@files.example/drop")
    assert isinstance(notifier_from_env(log), LogNotifier)
    assert "ALERT_WEBHOOK_URL must be an http(s) URL" in caplog.text
    assert "secret" not in caplog.text
