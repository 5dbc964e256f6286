"""Alerts for failed runs and failed asset checks: to Slack, to a webhook, or to the log.

Where an alert goes is decided each time a sensor runs, never when definitions load:

| variables set                      | destination                                            |
|------------------------------------|--------------------------------------------------------|
| `SLACK_BOT_TOKEN`, `SLACK_CHANNEL` | Slack `chat.postMessage` (`SLACK_API_URL` overrides the API base URL) |
| `ALERT_WEBHOOK_URL`                | a JSON POST of `{"title", "text", "fields", "severity", "source"}` |
| neither                            | the sensor's log, at ERROR (or WARNING for a WARN check) |

`DAGSTER_WEBSERVER_URL`, when set, adds a link to the run to every alert. The Slack token and
the webhook URL's credentials, query and path never appear in a log line or an alert: only the
channel, or the webhook's scheme and host, name the destination.

An alert that cannot be delivered is logged, with its text, and the sensor goes on: a broken
destination must not stop the sensor from moving past the failures it has already seen.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg
import httpx
from dagster_shared.error import SerializableErrorInfo
from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

AlertSeverity = Literal["ERROR", "WARN"]

RUN_FAILURE_SENSOR_NAME = "alert_on_run_failure"
CHECK_FAILURE_SENSOR_NAME = "alert_on_check_failure"

SLACK_TOKEN_VARIABLE = "SLACK_BOT_TOKEN"
SLACK_CHANNEL_VARIABLE = "SLACK_CHANNEL"
SLACK_API_URL_VARIABLE = "SLACK_API_URL"
WEBHOOK_URL_VARIABLE = "ALERT_WEBHOOK_URL"
WEBSERVER_URL_VARIABLE = "DAGSTER_WEBSERVER_URL"

DELIVERY_TIMEOUT_SECONDS = 10.0
WEBHOOK_ATTEMPTS = 2
WEBHOOK_RETRY_DELAY_SECONDS = 1.0

ERROR_LINES = 5
"""Lines of an error message quoted in a run failure alert."""
MAX_STEPS_IN_ALERT = 5
METADATA_ENTRIES = 5
"""Metadata entries of a failed check quoted in its alert."""
MAX_VALUE_CHARS = 200
RUN_END_EVENTS_PER_TICK = 25
"""Finished runs read per run-end event type and tick; the rest wait for the next tick."""

# Run tags Dagster sets on partitioned runs.
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

# Check evaluations are read run by run, once a run has ended: the event log of a run-sharded
# storage (the default SQLite one) has no global order for them, but run-end events have one.
RUN_END_EVENT_TYPES = (
    dg.DagsterEventType.RUN_SUCCESS,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
)


class AlertDeliveryError(Exception):
    """An alert did not reach its destination; the message names it without its secrets."""


@dataclass(frozen=True)
class Alert:
    """What to say: a one-line title, a few lines of text, and the same facts as fields."""

    title: str
    text: str
    fields: Mapping[str, str]
    severity: AlertSeverity = "ERROR"


class Notifier(ABC):
    """Sends alerts to one destination."""

    @property
    @abstractmethod
    def destination(self) -> str:
        """Where alerts go, safe to log (no token, no credentials)."""

    @abstractmethod
    def send(self, alert: Alert) -> None:
        """Deliver one alert, or raise `AlertDeliveryError`."""


class LogNotifier(Notifier):
    """Writes alerts to a log: ERROR alerts at ERROR, WARN alerts at WARNING."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    @property
    def destination(self) -> str:
        return "the sensor log"

    def send(self, alert: Alert) -> None:
        level = logging.ERROR if alert.severity == "ERROR" else logging.WARNING
        self._log.log(level, f"{alert.title}\n{alert.text}")


class SlackAlertResource(SlackResource):
    """`SlackResource` whose Web API base URL can be changed, e.g. to a Slack-compatible stub."""

    base_url: str = Field(
        default=WebClient.BASE_URL,
        description="Slack Web API base URL, ending in `/`.",
        examples=["https://slack.com/api/"],
    )

    def get_client(self) -> WebClient:
        return WebClient(
            token=self.token, base_url=self.base_url, timeout=int(DELIVERY_TIMEOUT_SECONDS)
        )


class SlackNotifier(Notifier):
    """Posts alerts to a Slack channel with `chat.postMessage`."""

    def __init__(self, slack: SlackResource, channel: str) -> None:
        self._slack = slack
        self._channel = channel

    @property
    def destination(self) -> str:
        return f"Slack channel {self._channel}"

    def send(self, alert: Alert) -> None:
        try:
            self._slack.get_client().chat_postMessage(
                channel=self._channel, text=f"*{alert.title}*\n{alert.text}"
            )
        except SlackApiError as error:
            answer = error.response.get("error", "an unexpected answer")
            raise AlertDeliveryError(f"{self.destination}: Slack answered {answer}") from None
        # The client raises urllib, http.client, socket and JSON errors alike; their text can
        # quote the request, so only the kind of failure is kept.
        except Exception as error:
            raise AlertDeliveryError(f"{self.destination}: {type(error).__name__}") from None


class WebhookNotifier(Notifier):
    """POSTs alerts as JSON to a URL, retrying once on a 5xx answer or a connection error.

    Credentials in the URL (`https://user:password@host/...`) are sent as HTTP basic auth.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DELIVERY_TIMEOUT_SECONDS,
        retry_delay: float = WEBHOOK_RETRY_DELAY_SECONDS,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError(
                f"{WEBHOOK_URL_VARIABLE} is not a valid URL: set it to an http(s) URL"
            ) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(
                f"{WEBHOOK_URL_VARIABLE} must be an http(s) URL with a host, "
                f"got one starting with {parsed.scheme or 'no scheme'!r}"
            )
        self._headers = {"Content-Type": "application/json"}
        if parsed.username or parsed.password:
            pair = f"{parsed.username}:{parsed.password}".encode()
            self._headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        self._url = parsed.copy_with(username=None, password=None)
        self._origin = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"
        self._timeout = httpx.Timeout(timeout)
        self._retry_delay = retry_delay

    @property
    def destination(self) -> str:
        return f"webhook at {self._origin}"

    def send(self, alert: Alert) -> None:
        payload = {
            "title": alert.title,
            "text": alert.text,
            "fields": dict(alert.fields),
            "severity": alert.severity,
            "source": "dagster",
        }
        failure = "no attempt"
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            if attempt > 1:
                time.sleep(self._retry_delay)
            try:
                status = self._post(payload)
            except httpx.TransportError as error:
                failure = type(error).__name__
                continue
            if status < 300:
                return
            failure = f"HTTP {status}"
            if status < 500:
                break
        raise AlertDeliveryError(f"{self.destination}: {failure}")

    def _post(self, payload: dict[str, Any]) -> int:
        # Straight through the transport: `httpx.Client` logs every request's full URL at INFO,
        # and this URL's query or path may be the webhook's secret.
        request = httpx.Request(
            "POST",
            self._url,
            headers=self._headers,
            content=json.dumps(payload).encode("utf-8"),
            extensions={"timeout": self._timeout.as_dict()},
        )
        with httpx.HTTPTransport() as transport:
            response = transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        return response.status_code


def _setting(name: str) -> str | None:
    """An environment variable with surrounding blanks removed; empty counts as unset."""
    value = os.environ.get(name, "").strip()
    return value or None


def notifier_from_env(log: logging.Logger) -> Notifier:
    """Slack when its token and channel are set, else the webhook when set, else `log`.

    A half-done setting is reported on `log` and skipped, so alerts still reach the log.
    """
    token = _setting(SLACK_TOKEN_VARIABLE)
    channel = _setting(SLACK_CHANNEL_VARIABLE)
    if token and channel:
        base_url = _setting(SLACK_API_URL_VARIABLE) or WebClient.BASE_URL
        # `chat.postMessage` is joined to the base URL: without the slash it would replace `api`.
        slack = SlackAlertResource(token=token, base_url=base_url.rstrip("/") + "/")
        return SlackNotifier(slack, channel)
    if token or channel:
        missing = SLACK_CHANNEL_VARIABLE if token else SLACK_TOKEN_VARIABLE
        log.warning(f"Slack alerts are off: {missing} is not set")
    webhook_url = _setting(WEBHOOK_URL_VARIABLE)
    if webhook_url:
        try:
            return WebhookNotifier(webhook_url)
        except ValueError as error:
            log.error(f"Webhook alerts are off: {error}")
    return LogNotifier(log)


def deliver(alert: Alert, notifier: Notifier, log: logging.Logger) -> bool:
    """Send `alert`; when that fails, log why and the alert itself. True when delivered."""
    try:
        notifier.send(alert)
    except AlertDeliveryError as error:
        log.error(f"Alert not delivered to {error}; it follows here instead")
        LogNotifier(log).send(alert)
        return False
    return True


def run_url(run_id: str) -> str | None:
    """Link to a run in the Dagster UI, when `DAGSTER_WEBSERVER_URL` is set."""
    base = _setting(WEBSERVER_URL_VARIABLE)
    return f"{base.rstrip('/')}/runs/{run_id}" if base else None


def error_summary(error: SerializableErrorInfo | None, lines: int = ERROR_LINES) -> str:
    """The first `lines` lines of the error a user raised, below Dagster's own wrapping errors."""
    if error is None:
        return "(no error recorded)"
    while error.cause is not None and error.cls_name and error.cls_name.startswith("Dagster"):
        error = error.cause
    message_lines = error.message.strip().splitlines() or [error.cls_name or "error"]
    kept = [_shorten(line) for line in message_lines[:lines]]
    if len(message_lines) > lines:
        kept.append("...")
    return "\n".join(kept)


def _shorten(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _partition_lines(tags: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    lines: list[str] = []
    fields: dict[str, str] = {}
    if PARTITION_TAG in tags:
        fields["partition"] = tags[PARTITION_TAG]
        lines.append(f"Partition: `{tags[PARTITION_TAG]}`")
    start, end = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
    if start is not None and end is not None:
        fields["partition_range"] = f"{start}...{end}"
        lines.append(f"Partition range: `{start}` to `{end}`")
    return lines, fields


def run_failure_alert(
    run: dg.DagsterRun,
    failure_event: dg.DagsterEvent,
    step_failures: Sequence[dg.DagsterEvent],
) -> Alert:
    """Job, run id, the failed steps with the first lines of their errors, partitions, link."""
    lines = [f"Job `{run.job_name}` failed in run `{run.run_id}`."]
    fields = {"job": run.job_name, "run_id": run.run_id}
    if step_failures:
        step_keys = [event.step_key or "?" for event in step_failures]
        fields["failed_steps"] = ", ".join(step_keys)
        for event in step_failures[:MAX_STEPS_IN_ALERT]:
            error = event.step_failure_data.error
            lines.append(f"Step `{event.step_key}` failed:\n{_indent(error_summary(error))}")
        if len(step_failures) > MAX_STEPS_IN_ALERT:
            lines.append(f"... and {len(step_failures) - MAX_STEPS_IN_ALERT} more failed steps")
    else:
        error = (
            failure_event.job_failure_data.error
            if failure_event.event_type == dg.DagsterEventType.RUN_FAILURE
            else None
        )
        summary = error_summary(error) if error else _shorten(failure_event.message or "")
        if summary:
            lines.append(_indent(summary))
    partition_lines, partition_fields = _partition_lines(run.tags)
    lines.extend(partition_lines)
    fields.update(partition_fields)
    link = run_url(run.run_id)
    if link:
        lines.append(f"Run: {link}")
        fields["run_url"] = link
    return Alert(title=f"Run failed: {run.job_name}", text="\n".join(lines), fields=fields)


def _metadata_text(value: dg.MetadataValue) -> str:
    raw = value.value
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    return _shorten(" ".join(text.split()))


def check_failure_alert(evaluation: dg.AssetCheckEvaluation, run_id: str) -> Alert:
    """Asset, check, severity, partition and the first metadata entries of a failed check."""
    severity: AlertSeverity = (
        "WARN" if evaluation.severity == dg.AssetCheckSeverity.WARN else "ERROR"
    )
    asset = evaluation.asset_key.to_user_string()
    check = evaluation.check_name
    lines = [f"Check `{check}` on `{asset}` failed with severity {severity} in run `{run_id}`."]
    fields = {"asset": asset, "check": check, "severity": severity, "run_id": run_id}
    if evaluation.partition is not None:
        lines.append(f"Partition: `{evaluation.partition}`")
        fields["partition"] = evaluation.partition
    if evaluation.description:
        lines.append(_shorten(evaluation.description))
    entries = list(evaluation.metadata.items())
    for label, value in entries[:METADATA_ENTRIES]:
        lines.append(f"{label}: {_metadata_text(value)}")
    if len(entries) > METADATA_ENTRIES:
        lines.append(f"... and {len(entries) - METADATA_ENTRIES} more metadata entries")
    link = run_url(run_id)
    if link:
        lines.append(f"Run: {link}")
        fields["run_url"] = link
    return Alert(
        title=f"{severity}: check {check} failed on {asset}",
        text="\n".join(lines),
        fields=fields,
        severity=severity,
    )


@dataclass(frozen=True)
class CheckAlertCursor:
    """The storage id of the last run-end event read, per run-end event type."""

    last_storage_ids: Mapping[str, int]

    def after(self, event_type: dg.DagsterEventType) -> int:
        return self.last_storage_ids.get(event_type.name, -1)

    def advanced(self, event_type: dg.DagsterEventType, storage_id: int) -> CheckAlertCursor:
        return CheckAlertCursor({**self.last_storage_ids, event_type.name: storage_id})

    def to_json(self) -> str:
        return json.dumps(dict(sorted(self.last_storage_ids.items())))

    @classmethod
    def from_json(cls, text: str | None) -> CheckAlertCursor | None:
        """The cursor in `text`, or None when there is none or it is not one of ours."""
        if not text:
            return None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(raw, dict) or not all(isinstance(value, int) for value in raw.values()):
            return None
        return cls({str(key): value for key, value in raw.items()})

    @classmethod
    def latest(cls, instance: dg.DagsterInstance) -> CheckAlertCursor:
        """A cursor past every run that has already ended."""
        last: dict[str, int] = {}
        for event_type in RUN_END_EVENT_TYPES:
            records = instance.fetch_run_status_changes(event_type, limit=1).records
            last[event_type.name] = records[0].storage_id if records else -1
        return cls(last)


def _ended_runs(
    instance: dg.DagsterInstance, cursor: CheckAlertCursor
) -> list[tuple[dg.DagsterEventType, dg.EventLogRecord]]:
    """Run-end events after `cursor`, oldest first."""
    ended: list[tuple[dg.DagsterEventType, dg.EventLogRecord]] = []
    for event_type in RUN_END_EVENT_TYPES:
        records = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type, after_storage_id=cursor.after(event_type)),
            limit=RUN_END_EVENTS_PER_TICK,
            ascending=True,
        ).records
        ended.extend((event_type, record) for record in records)
    return sorted(ended, key=lambda pair: pair[1].storage_id)


def failed_check_evaluations(
    instance: dg.DagsterInstance, run_id: str
) -> list[dg.AssetCheckEvaluation]:
    """The check evaluations of a run that did not pass, in the order they happened."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations: list[dg.AssetCheckEvaluation] = []
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.event_specific_data if event else None
        if isinstance(data, dg.AssetCheckEvaluation) and not data.passed:
            evaluations.append(data)
    return evaluations


def alert_on_failed_checks(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Read the check evaluations of runs that ended since the cursor; alert on each failure.

    Only checks defined in this code location are reported (all of them when the sensor runs
    without one, as in a test). The first tick only remembers where the event log ends.
    """
    instance = context.instance
    cursor = CheckAlertCursor.from_json(context.cursor)
    if cursor is None:
        cursor = CheckAlertCursor.latest(instance)
        return dg.SensorResult(
            skip_reason="Watching check evaluations of runs that end from now on",
            cursor=cursor.to_json(),
        )
    repository = context.repository_def
    own_checks = repository.asset_graph.asset_check_keys if repository else None
    notifier: Notifier | None = None
    alerted = 0
    seen_runs: set[str] = set()
    for event_type, record in _ended_runs(instance, cursor):
        cursor = cursor.advanced(event_type, record.storage_id)
        run_id = record.event_log_entry.run_id
        if run_id in seen_runs:
            continue
        seen_runs.add(run_id)
        for evaluation in failed_check_evaluations(instance, run_id):
            if own_checks is not None and evaluation.asset_check_key not in own_checks:
                continue
            notifier = notifier or notifier_from_env(context.log)
            if not deliver(check_failure_alert(evaluation, run_id), notifier, context.log):
                # The destination is down: the rest of this tick's alerts go straight to the
                # log instead of each waiting out its timeout and retry.
                notifier = LogNotifier(context.log)
            alerted += 1
    if alerted:
        summary = f"Alerted on {alerted} failed check(s)"
    else:
        summary = "No failed checks in runs that ended since the last tick"
    return dg.SensorResult(skip_reason=summary, cursor=cursor.to_json())


def alert_on_failed_run(context: dg.RunFailureSensorContext) -> None:
    alert = run_failure_alert(
        context.dagster_run, context.failure_event, context.get_step_failure_events()
    )
    deliver(alert, notifier_from_env(context.log), context.log)


def build_alert_sensors() -> list[dg.SensorDefinition]:
    """The run-failure and check-failure alert sensors, both running by default."""
    run_failure = dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR_NAME,
        description=(
            "Alerts on every failed run of this code location: to Slack, a webhook, or the log."
        ),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )(alert_on_failed_run)
    check_failure = dg.sensor(
        name=CHECK_FAILURE_SENSOR_NAME,
        description=(
            "Alerts on every failed asset check (ERROR or WARN) of this code location, once the "
            "run that evaluated it has ended: to Slack, a webhook, or the log."
        ),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )(alert_on_failed_checks)
    return [run_failure, check_failure]
