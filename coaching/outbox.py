"""Notifications: written to the `outbox` table with the change, delivered later, by webhook or e-mail.

An action never waits for delivery: `enqueue` only inserts a row (and nothing at all when its
channel is not configured: STEPWATCH_WEBHOOK_URL for a webhook, STEPWATCH_SMTP_HOST for an e-mail).
`deliver_due(client, settings)`, run periodically by the server, POSTs the webhook messages that are
due to the configured URL and hands the e-mails to the SMTP server, and records each attempt:
delivered, or the error and the time of the next try, with exponential backoff (30 s, 1 min, 2 min
... capped at 6 h) up to MAX_ATTEMPTS, after which the message is given up (`failed`) until someone
retries it. Both channels share this one queue, so an e-mail is retried exactly like a webhook.
Delivery is at least once: each message carries its id (`message_id` in the body and the
`X-Stepwatch-Message-Id` header; an e-mail's `Message-ID`) so a receiver can drop a repeat.

A webhook body is JSON with a Slack-compatible `text` field, so a Slack or Mattermost incoming
webhook shows the sentence as it is and other systems read the structured fields. An e-mail's row
holds JSON too: `subject`, `text` and `html` (the two parts of a multipart/alternative message);
the address is the row's `recipient`. The SMTP password is read from the settings when a message
is sent and never written to a row, an error or a log.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from clickhouse_connect.driver.client import Client

from coaching._store import aware, iso, utc
from kernel.errors import Conflict, NotFound
from kernel.settings import Settings
from kernel.storage import query_rows

MAX_ATTEMPTS = 10
FIRST_RETRY_S = 30.0
LONGEST_RETRY_S = 6 * 3600.0
POST_TIMEOUT_S = 10.0
SMTP_TIMEOUT_S = 20.0
CHANNELS = ("webhook", "email")
COLUMNS = ("message_id", "site", "topic", "channel", "recipient", "object", "body", "created_at", "attempts",
           "next_attempt_at", "last_error", "delivered_at", "version")

#: post(url, body, headers): deliver one message, raise any exception when it was not accepted.
Poster = Callable[[str, bytes, dict[str, str]], None]
#: mail(settings, message): hand one e-mail to the SMTP server, raise any exception when it was not accepted.
Mailer = Callable[[Settings, EmailMessage], None]


@dataclass(frozen=True)
class OutboxMessage:
    message_id: str
    site: str
    topic: str
    object: str
    body: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None
    last_error: str
    delivered_at: datetime | None
    version: int
    channel: str = "webhook"
    recipient: str = ""  # an e-mail's address

    @property
    def status(self) -> str:
        """delivered; pending (not tried yet, or waiting for its next try after a failure); failed (given up)."""
        if self.delivered_at is not None:
            return "delivered"
        return "pending" if self.next_attempt_at is not None else "failed"

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "site": self.site, "topic": self.topic, "channel": self.channel,
                "recipient": self.recipient, "object": self.object,
                "status": self.status, "attempts": self.attempts, "created_at": iso(self.created_at),
                "next_attempt_at": iso(self.next_attempt_at) if self.next_attempt_at else None,
                "last_error": self.last_error,
                "delivered_at": iso(self.delivered_at) if self.delivered_at else None,
                "body": json.loads(self.body)}


@dataclass(frozen=True)
class DeliveryReport:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0  # failed this time and will be retried
    given_up: int = 0  # failed for the last time


def configured(settings: Settings) -> tuple[str, ...]:
    """The channels messages can be sent by: a webhook URL and an SMTP host each enable one."""
    return tuple(c for c, on in (("webhook", settings.webhook_url), ("email", settings.smtp_host)) if on)


def enqueue(client: Client, settings: Settings, *, site: str, topic: str, obj: str, body: dict[str, Any],
            now: datetime | None = None, channel: str = "webhook", recipient: str = "") -> OutboxMessage | None:
    """Queue a notification; None (nothing stored) when its channel is not configured, or an e-mail
    has no address."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if channel not in configured(settings) or (channel == "email" and not recipient):
        return None
    now = now or datetime.now(UTC)
    message_id = str(uuid.uuid4())
    message = OutboxMessage(message_id=message_id, site=site, topic=topic, object=obj,
                            body=json.dumps({**body, "message_id": message_id}, default=str), created_at=now,
                            attempts=0, next_attempt_at=now, last_error="", delivered_at=None, version=time.time_ns(),
                            channel=channel, recipient=recipient)
    _write(client, message)
    return message


def queued(client: Client, obj: str, channel: str) -> bool:
    """Whether a message about `obj` was ever queued on `channel`, whatever became of it (a weekly
    digest is queued once: a second run the same week finds it here)."""
    return bool(client.command("SELECT count() > 0 FROM outbox WHERE object = {o:String} AND channel = {c:String}",
                               parameters={"o": obj, "c": channel}))


def deliver_due(client: Client, settings: Settings, post: Poster | None = None, *, now: datetime | None = None,
                limit: int = 50, budget_s: float = 20.0, mail: Mailer | None = None) -> DeliveryReport:
    """Send the messages whose time has come; the function to run periodically (e.g. every 30 s).
    A message whose channel is not configured (any more) waits, untried.

    It stops starting new deliveries after `budget_s` seconds, so a webhook that hangs until
    each timeout holds the calling worker for at most about budget + one timeout; the rest wait
    for the next run.
    """
    channels = configured(settings)
    if not channels:
        return DeliveryReport()
    post, mail = post or post_json, mail or send_smtp
    now = now or datetime.now(UTC)
    report = DeliveryReport()
    started = time.monotonic()
    for message in _due(client, now, limit, channels):
        if time.monotonic() - started > budget_s:
            break
        attempts = message.attempts + 1
        try:
            if message.channel == "email":
                mail(settings, email_of(settings, message))
            else:
                headers = {"Content-Type": "application/json", "X-Stepwatch-Message-Id": message.message_id,
                           "User-Agent": "stepwatch-webhook"}
                post(settings.webhook_url or "", message.body.encode(), headers)
        except Exception as exc:  # any failure of the receiver or the network is recorded, never raised
            error = _describe(exc)
            last = attempts >= MAX_ATTEMPTS
            _write(client, replace(message, attempts=attempts, last_error=error, version=time.time_ns(),
                                   next_attempt_at=None if last else now + backoff(attempts)))
            report = replace(report, attempted=report.attempted + 1, failed=report.failed + (not last),
                             given_up=report.given_up + last)
            continue
        _write(client, replace(message, attempts=attempts, last_error="", delivered_at=now, next_attempt_at=None,
                               version=time.time_ns()))
        report = replace(report, attempted=report.attempted + 1, delivered=report.delivered + 1)
    return report


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed try: 30 s, 1 min, 2 min, 4 min ... at most 6 h."""
    return timedelta(seconds=min(FIRST_RETRY_S * 2 ** (attempts - 1), LONGEST_RETRY_S))


def messages(client: Client, *, site: str | None = None, status: str | None = None,
             limit: int = 100) -> list[OutboxMessage]:
    """The newest messages first, optionally only delivered, pending or failed ones."""
    if status not in (None, "delivered", "pending", "failed"):
        raise ValueError(f"unknown status {status!r}")
    rows = query_rows(
        client,
        f"SELECT {', '.join(COLUMNS)} FROM outbox FINAL WHERE ({{site:String}} = '' OR site = {{site:String}}) "
        "AND ({status:String} = '' OR multiIf(delivered_at IS NOT NULL, 'delivered', next_attempt_at IS NOT NULL, "
        "'pending', 'failed') = {status:String}) ORDER BY created_at DESC LIMIT {limit:UInt32}",
        {"site": site or "", "status": status or "", "limit": limit},
    )
    return [_message(r) for r in rows]


def get(client: Client, message_id: str) -> OutboxMessage:
    rows = query_rows(client, f"SELECT {', '.join(COLUMNS)} FROM outbox FINAL WHERE message_id = {{id:UUID}}",
                      {"id": message_id})
    if not rows:
        raise NotFound(f"no outbox message {message_id}")
    return _message(rows[0])


def retry(client: Client, message_id: str, *, now: datetime | None = None) -> OutboxMessage:
    """Put a failed message back in the queue, to be tried at the next delivery."""
    message = get(client, message_id)
    if message.status != "failed":
        raise Conflict(f"message {message_id} is {message.status}: only a failed message is retried")
    again = replace(message, next_attempt_at=now or datetime.now(UTC), version=time.time_ns())
    _write(client, again)
    return again


def post_json(url: str, body: bytes, headers: dict[str, str]) -> None:
    """The default poster: urllib (stdlib), 10 s timeout; any status but 2xx is a failure."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:  # noqa: S310 - configured URL
        if not 200 <= response.status < 300:
            raise RuntimeError(f"HTTP {response.status}")


def email_of(settings: Settings, message: OutboxMessage) -> EmailMessage:
    """The e-mail a queued message stands for: plain text, and an HTML alternative when it has one."""
    body = json.loads(message.body)
    mail = EmailMessage()
    mail["Subject"] = body["subject"]
    mail["From"] = settings.smtp_from
    mail["To"] = message.recipient
    mail["Date"] = formatdate(message.created_at.timestamp(), usegmt=True)
    mail["Message-ID"] = f"<{message.message_id}@stepwatch>"  # the same on every try: a repeat can be dropped
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    mail.set_content(body["text"])
    if body.get("html"):
        mail.add_alternative(body["html"], subtype="html")
    if body.get("language"):  # after the parts: making a multipart moves Content-* headers into the first part
        mail["Content-Language"] = body["language"]
    return mail


def send_smtp(settings: Settings, mail: EmailMessage, *, tls: ssl.SSLContext | None = None) -> None:
    """The default mailer: smtplib (stdlib), STARTTLS with the certificate checked when SMTP_STARTTLS is on
    (the server must offer it), a login when SMTP_USER is set; any refusal raises."""
    with smtplib.SMTP(settings.smtp_host or "", settings.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=tls or ssl.create_default_context())
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        refused = smtp.send_message(mail)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"[:500]
    if isinstance(exc, urllib.error.URLError):
        return f"cannot reach the webhook: {exc.reason}"[:500]
    if isinstance(exc, smtplib.SMTPResponseException):  # the server's code and words, never what we sent
        return f"SMTP {exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"[:500]
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "SMTP: the recipient was refused"
    if isinstance(exc, ConnectionRefusedError | TimeoutError | OSError) and not isinstance(exc, smtplib.SMTPException):
        return f"cannot reach the SMTP server or webhook: {type(exc).__name__}: {exc}"[:500]
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:500]


def _due(client: Client, now: datetime, limit: int, channels: tuple[str, ...]) -> list[OutboxMessage]:
    rows = query_rows(
        client,
        f"SELECT {', '.join(COLUMNS)} FROM outbox FINAL WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL "
        "AND next_attempt_at <= {now:DateTime64(3, 'UTC')} AND channel IN {channels:Array(String)} "
        "ORDER BY created_at LIMIT {limit:UInt32}",
        {"now": utc(now), "limit": limit, "channels": list(channels)},
    )
    return [_message(r) for r in rows]


def _write(client: Client, m: OutboxMessage) -> None:
    client.insert("outbox", [[m.message_id, m.site, m.topic, m.channel, m.recipient, m.object, m.body,
                              utc(m.created_at), m.attempts,
                              utc(m.next_attempt_at) if m.next_attempt_at else None, m.last_error,
                              utc(m.delivered_at) if m.delivered_at else None, m.version]],
                  column_names=list(COLUMNS))


def _message(row: dict[str, Any]) -> OutboxMessage:
    return OutboxMessage(**{**row, "message_id": str(row["message_id"]), "created_at": aware(row["created_at"]),
                            "next_attempt_at": aware(row["next_attempt_at"]) if row["next_attempt_at"] else None,
                            "delivered_at": aware(row["delivered_at"]) if row["delivered_at"] else None})
