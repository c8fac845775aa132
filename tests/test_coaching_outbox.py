"""Webhook notifications: queued with the change, delivered to a real local HTTP server, retried
with backoff when it fails, given up after the last attempt, never in the way of the action."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from coaching import assignments, outbox
from coaching.lifecycle import Target
from kernel import sites, storage
from kernel.errors import Conflict
from kernel.settings import Settings
from tests.coaching_helpers import Org, build_org, today


class Receiver:
    """A webhook receiver on a free loopback port that fails the first `fail` requests with 503."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), json.loads(body)))
                status = 503 if len(receiver.requests) <= receiver.fail else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail=2) as r:
        yield r


@pytest.fixture
def org(client: storage.Client, site: sites.Site) -> Org:
    return build_org(client, site.name)


def assign(client: storage.Client, settings: Settings, org: Org) -> assignments.CoachingAssignment:
    return assignments.assign(client, settings, org.dana, site=org.site, manager="m-1", step="offer",
                              kind="mentor_meeting", mentor="tom", due=today() + timedelta(days=5),
                              target=Target(240_000, 21))


def test_delivered_after_retries_with_backoff(client: storage.Client, settings: Settings, org: Org,
                                              receiver: Receiver) -> None:
    hooked = settings.model_copy(update={"webhook_url": receiver.url})
    a = assign(client, hooked, org)
    (queued,) = outbox.messages(client)
    assert (queued.status, queued.topic, queued.object, queued.attempts) == ("pending", "coaching.assigned",
                                                                             a.assignment_id, 0)
    assert receiver.requests == []  # the action did not wait for the webhook

    now = datetime.now(UTC)
    assert outbox.deliver_due(client, hooked, now=now) == outbox.DeliveryReport(attempted=1, failed=1)
    (first,) = outbox.messages(client)
    assert (first.status, first.attempts, first.last_error) == ("pending", 1, "HTTP 503 Service Unavailable")
    assert first.next_attempt_at == now.replace(microsecond=now.microsecond // 1000 * 1000) + timedelta(seconds=30)
    assert outbox.deliver_due(client, hooked, now=now + timedelta(seconds=10)).attempted == 0  # not due yet
    outbox.deliver_due(client, hooked, now=now + timedelta(seconds=31))
    (second,) = outbox.messages(client, status="pending")
    assert second.attempts == 2 and second.next_attempt_at - (now + timedelta(seconds=31)) > timedelta(seconds=59)
    report = outbox.deliver_due(client, hooked, now=now + timedelta(minutes=5))
    assert report == outbox.DeliveryReport(attempted=1, delivered=1)
    (done,) = outbox.messages(client)
    assert (done.status, done.attempts, done.last_error) == ("delivered", 3, "")
    assert len(receiver.requests) == 3

    headers, body = receiver.requests[-1]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Stepwatch-Message-Id"] == body["message_id"] == done.message_id
    assert body["type"] == "coaching.assigned" and body["assignment_id"] == a.assignment_id
    assert body["text"].startswith("dana assigned a meeting with tom to m-1 (team north) on step offer")
    assert outbox.deliver_due(client, hooked, now=now + timedelta(hours=1)).attempted == 0  # delivered once


def test_given_up_after_the_last_attempt_and_retried_by_hand(client: storage.Client, settings: Settings,
                                                             org: Org) -> None:
    with Receiver(fail=outbox.MAX_ATTEMPTS) as receiver:
        hooked = settings.model_copy(update={"webhook_url": receiver.url})
        assign(client, hooked, org)
        now = datetime.now(UTC)
        for _ in range(outbox.MAX_ATTEMPTS):
            now += timedelta(hours=7)  # past the longest backoff
            outbox.deliver_due(client, hooked, now=now)
        (failed,) = outbox.messages(client, status="failed")
        assert failed.attempts == outbox.MAX_ATTEMPTS and failed.next_attempt_at is None
        assert "503" in failed.last_error and failed.as_dict()["status"] == "failed"
        assert outbox.deliver_due(client, hooked, now=now + timedelta(days=1)).attempted == 0
        outbox.retry(client, failed.message_id, now=now)
        with pytest.raises(Conflict):
            outbox.retry(client, failed.message_id)
        assert outbox.deliver_due(client, hooked, now=now).delivered == 1
        assert len(receiver.requests) == outbox.MAX_ATTEMPTS + 1


def test_an_unreachable_webhook_is_recorded_and_every_change_is_queued(client: storage.Client, settings: Settings,
                                                                       org: Org) -> None:
    hooked = settings.model_copy(update={"webhook_url": "http://127.0.0.1:9/nothing-listens-here"})
    a = assign(client, hooked, org)
    assignments.cancel(client, hooked, org.dana, a.assignment_id, reason="wrong step")
    report = outbox.deliver_due(client, hooked)
    assert report.failed == 2
    messages = outbox.messages(client)
    assert {m.topic for m in messages} == {"coaching.assigned", "coaching.cancelled"}
    assert all(m.last_error.startswith("cannot reach the webhook") for m in messages)
    cancelled = next(m for m in messages if m.topic == "coaching.cancelled")
    assert json.loads(cancelled.body)["text"] == "dana cancelled a meeting with tom for m-1 (team north) on step " \
                                                 "offer: wrong step"


def test_no_webhook_no_messages(client: storage.Client, settings: Settings, org: Org) -> None:
    assign(client, settings, org)
    assert outbox.messages(client) == []
    assert outbox.deliver_due(client, settings) == outbox.DeliveryReport()


def test_backoff_doubles_up_to_six_hours() -> None:
    assert [outbox.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert outbox.backoff(20) == timedelta(hours=6)


def test_a_slow_webhook_holds_the_worker_for_the_budget_only(client: storage.Client, settings: Settings,
                                                             org: Org) -> None:
    import time

    hooked = settings.model_copy(update={"webhook_url": "http://hooks.example.com/x"})
    a = assign(client, hooked, org)
    assignments.cancel(client, hooked, org.dana, a.assignment_id, reason="twice")
    seen: list[str] = []

    def slow(url: str, body: bytes, headers: dict[str, str]) -> None:
        seen.append(url)
        time.sleep(0.2)

    assert outbox.deliver_due(client, hooked, slow, budget_s=0.1) == outbox.DeliveryReport(attempted=1, delivered=1)
    assert seen == ["http://hooks.example.com/x"]
    assert outbox.deliver_due(client, hooked, slow).delivered == 1  # the other one, next run


def test_an_email_is_queued_only_with_smtp_and_an_address_and_waits_while_smtp_is_off(
        client: storage.Client, settings: Settings, site: sites.Site) -> None:
    body = {"subject": "Weekly", "text": "plain words", "html": "<p>words</p>", "language": "ru"}
    assert outbox.enqueue(client, settings, site=site.name, topic="digest.director", obj="x", body=body,
                          channel="email", recipient="dana@example.com") is None  # no SMTP host
    mailing = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": 9, "smtp_from": "sw@example.com"})
    assert outbox.enqueue(client, mailing, site=site.name, topic="digest.director", obj="x", body=body,
                          channel="email") is None  # no address
    with pytest.raises(ValueError):
        outbox.enqueue(client, mailing, site=site.name, topic="t", obj="x", body=body, channel="pigeon")
    message = outbox.enqueue(client, mailing, site=site.name, topic="digest.director", obj="x", body=body,
                             channel="email", recipient="dana@example.com")
    assert message is not None and outbox.queued(client, "x", "email") and not outbox.queued(client, "x", "webhook")

    # Only a webhook configured now: the e-mail waits untried, it is not failed.
    hooked = settings.model_copy(update={"webhook_url": "http://127.0.0.1:9/hook"})
    assert outbox.deliver_due(client, hooked).attempted == 0
    (waiting,) = outbox.messages(client)
    assert (waiting.status, waiting.attempts, waiting.channel, waiting.recipient) == ("pending", 0, "email",
                                                                                      "dana@example.com")

    mail = outbox.email_of(mailing, waiting)
    assert (mail["To"], mail["From"], mail["Subject"], mail["Content-Language"]) == (
        "dana@example.com", "sw@example.com", "Weekly", "ru")
    assert mail["Message-ID"] == f"<{waiting.message_id}@stepwatch>" and mail["Auto-Submitted"] == "auto-generated"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]

    # Nothing listens on port 9: recorded, retried later.
    assert outbox.deliver_due(client, mailing).failed == 1
    (tried,) = outbox.messages(client)
    assert tried.status == "pending" and tried.last_error.startswith("cannot reach the SMTP server or webhook")
