"""The weekly digests: what a director and a trainer are sent, in their language, e-mailed through a real
local SMTP server (aiosmtpd, STARTTLS with a certificate made here) and posted to a real local webhook,
with the outbox's retries, once a week."""

from __future__ import annotations

import asyncio
import email
import io
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

import coaching
from coaching import outbox
from coaching.lifecycle import Target
from kernel import managers, sites, storage, users
from kernel.errors import InvalidInput
from kernel.settings import Settings
from stepwatch import digests
from stepwatch.app import create_app
from stepwatch.cli import build_parser
from tests.coaching_helpers import Org, add_sessions, at, build_org, today
from tests.coaching_helpers import sign_in as login
from tests.dashboard_data import make_flag, stats_row, store_pair_stats
from tests.web_helpers import SECRET

PUBLIC = "https://stepwatch.example.com"
SMTP_PASSWORD = "s3cret-smtp-pa55word"
TARGET = Target(240_000, 30)


# -- the organisation of the digests ----------------------------------------------------------------------

class Week:
    """What happened to north and south this week: dana (north) and sam (south) direct, tom mentors."""

    def __init__(self, client: storage.Client, settings: Settings, org: Org):
        self.org = org
        site = org.site
        managers.set_manager(client, site, "m-1", name="Maxim Orlov", actor="test")
        managers.set_manager(client, site, "m-2", name="Maria Ivanova", actor="test")
        managers.set_manager(client, site, "s-1", name="Sergey Lee", actor="test")
        users.set_email(client, "dana", "dana@example.com", actor="test")
        users.set_email(client, "tom", "tom@example.com", actor="test")
        until = today()
        # A run two weeks ago (north lost 3 h then) and the latest one.
        store_pair_stats(client, site, [{**stats_row(site, "north", "m-1", "offer", 300_000), "status": "slow",
                                         "minutes_lost_per_week": 180.0}],
                         until - timedelta(days=27), until - timedelta(days=14))
        store_pair_stats(client, site, [stats_row(site, "north", "m-1", "offer", 300_000)],
                         until - timedelta(days=13), until)
        self.new = make_flag(client, site, team="north", manager="m-1", step="offer", minutes_lost=90,
                             opened_days_ago=2)
        self.systemic = make_flag(client, site, kind="systemic", team="north", manager="", step="needs",
                                  managers=("m-3", "m-4"), minutes_lost=30, opened_days_ago=3)
        self.old = make_flag(client, site, team="north", manager="m-1", step="needs", minutes_lost=12,
                             opened_days_ago=30)
        self.resolved = make_flag(client, site, team="north", manager="m-2", step="offer", minutes_lost=45,
                                  opened_days_ago=20, status="resolved")
        self.south = make_flag(client, site, team="south", manager="s-1", step="offer", minutes_lost=70,
                               opened_days_ago=1)
        # m-1 coached on offer by tom 30 days ago, evaluated now.
        first, last = today() - timedelta(days=60), today() - timedelta(days=1)
        change = today() - timedelta(days=25)
        add_sessions(client, site, "m-1", first, change - timedelta(days=1), 300, seed=1)
        add_sessions(client, site, "m-1", change, last, 210, seed=2)
        for i, peer in enumerate(["m-2", "m-3", "m-4"]):
            add_sessions(client, site, peer, first, last, 250, seed=10 + i)
        assigned_at = at(today() - timedelta(days=30))
        self.coached = coaching.assign(client, settings, org.dana, site=site, manager="m-1", step="offer",
                                       kind="course", course_id="offer-workshop", mentor="tom",
                                       due=assigned_at.date() + timedelta(days=7), target=TARGET, now=assigned_at)
        coaching.mark_done(client, settings, org.tom, self.coached.assignment_id,
                           now=at(today() - timedelta(days=26)))
        coaching.evaluate_assignment(client, settings, self.coached.assignment_id, org.dana)
        # tom: one meeting overdue, one due in three days, one far off.
        ten_days_ago = at(today() - timedelta(days=10))
        self.overdue = coaching.assign(client, settings, org.dana, site=site, manager="m-2", step="offer",
                                       kind="mentor_meeting", mentor="tom", due=today() - timedelta(days=2),
                                       target=TARGET, now=ten_days_ago)
        self.soon = coaching.assign(client, settings, org.dana, site=site, manager="m-1", step="needs",
                                    kind="mentor_meeting", mentor="tom", due=today() + timedelta(days=3),
                                    target=TARGET)
        self.later = coaching.assign(client, settings, org.dana, site=site, manager="m-3", step="needs",
                                     kind="mentor_meeting", mentor="tom", due=today() + timedelta(days=20),
                                     target=Target(240_000, 40))


@pytest.fixture
def week(client: storage.Client, settings: Settings, site: sites.Site) -> Week:
    return Week(client, settings, build_org(client, site.name))


def public(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"public_url": PUBLIC, **changes})


def one(found: list[digests.Digest], account: str) -> digests.Digest:
    (digest,) = [d for d in found if d.account == account]
    return digest


# -- what is composed -------------------------------------------------------------------------------------

async def test_a_directors_digest_has_the_overviews_figures_and_a_link_for_each_item(
        aiohttp_client: Any, client: storage.Client, settings: Settings, week: Week) -> None:
    found = digests.compose(client, public(settings))
    dana = one(found, "dana")
    assert (dana.kind, dana.language, dana.email) == ("director", "en", "dana@example.com")

    # The same figures as the overview's headline, read by the dashboards as dana.
    api = await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET,
                                                                      "analysis_interval_s": 0})))
    await login(api, "dana")
    headline = (await (await api.get(f"/api/v1/overview?site={week.org.site}")).json())["headline"]
    figures = dana.figures
    assert figures["hours_lost_per_week"] == headline["hours_lost_per_week"] == round((90 + 30 + 12) / 60, 2)
    assert figures["hours_lost_per_week_previous"] == headline["hours_lost_per_week_previous"] == 3.0
    assert (figures["new_this_week"], figures["resolved_this_week"]) == (headline["new_this_week"],
                                                                         headline["resolved_this_week"]) == (2, 1)
    assert [f["flag_id"] for f in figures["new"]] == [week.new.flag_id, week.systemic.flag_id]  # costliest first
    assert [f["flag_id"] for f in figures["resolved"]] == [week.resolved.flag_id]
    (outcome,) = figures["coaching_evaluated"]
    assert outcome["assignment_id"] == week.coached.assignment_id and outcome["verdict"] == "improved"

    text = dana.text
    assert dana.subject == f"stepwatch weekly, {week.org.site}: 2.2 h lost a week"
    assert "Time lost a week on open drawdowns: 2.2\xa0h (open drawdowns: 3)" in text
    assert "A week earlier: 3.0\xa0h (0.8\xa0h less now)" in text
    assert f"- Maxim Orlov, Offer: 90\xa0min lost a week\n  {PUBLIC}/drawdowns/{week.new.flag_id}?site=crm" in text
    assert "- team north, 2 managers slow, Needs assessment: 30\xa0min lost a week" in text
    assert f"- Maria Ivanova, Offer: was 45\xa0min lost a week\n  {PUBLIC}/drawdowns/{week.resolved.flag_id}" in text
    effect = round(outcome["relative_effect_pct"])
    assert f"- Maxim Orlov, Offer (course): improved, time on the step {effect}%\n" in text
    assert f"{PUBLIC}/coaching/assignments/{week.coached.assignment_id}?site=crm" in text
    assert f"Open the overview: {PUBLIC}/overview?site=crm" in text
    # Nothing of another team, no raw ids where a name exists, no English analysis reasons.
    for absent in ("Sergey Lee", "s-1", "m-1", "m-2", week.south.flag_id, "median above"):
        assert absent not in text, absent

    # The HTML part says the same, every item a link.
    html = dana.html
    assert html.startswith("<!DOCTYPE html>") and '<html lang="en">' in html
    assert f'<a href="{PUBLIC}/drawdowns/{week.new.flag_id}?site=crm" style="color:#0969da;">Maxim Orlov, Offer</a>' \
        in html
    assert html.count("<li") == 4  # two new, one resolved, one evaluated
    assert '<span style="color:#1a7f37;">improved, time on the step' in html  # green: it worked
    assert 'color:#1a7f37;">3.0\xa0h (0.8\xa0h less now)</td>' in html

    sam = one(found, "sam")
    assert [f["flag_id"] for f in sam.figures["new"]] == [week.south.flag_id] and "Sergey Lee, Offer" in sam.text
    assert sam.figures["coaching_evaluated"] == []
    assert "Coaching evaluated this week: none" in sam.text


def test_a_digest_is_in_the_recipients_language(client: storage.Client, settings: Settings, week: Week) -> None:
    users.set_language(client, "dana", "ru", actor="test")
    users.set_language(client, "tom", "ru", actor="test")
    found = digests.compose(client, public(settings))
    dana, tom = one(found, "dana"), one(found, "tom")
    assert dana.language == tom.language == "ru"
    assert dana.subject == "stepwatch, неделя, crm: потери 2,2 ч в неделю"
    assert "Потери времени в неделю на открытых просадках: 2,2\xa0ч (открытых просадок: 3)" in dana.text
    assert "- Maxim Orlov, Offer: потери 90\xa0мин в неделю" in dana.text
    assert "- Maxim Orlov, Offer (курс): улучшение, время на шаге" in dana.text
    assert "Открыть обзор" in dana.text and '<html lang="ru">' in dana.html
    assert "Неделей раньше: 3,0\xa0ч (сейчас на 0,8\xa0ч меньше)" in dana.text
    assert "Просрочено:" in tom.text and "Срок в ближайшие 7 дней:" in tom.text
    assert 'color:#cf222e;">Просрочено</h2>' in tom.html  # an overdue list stands out
    for english in ("Time lost", "New drawdowns", "Overdue", "Open the", "Hello", "due "):
        assert english not in dana.text + tom.text, english


def test_a_trainer_is_sent_what_is_due_and_overdue_and_nothing_when_nothing_is(
        client: storage.Client, settings: Settings, week: Week) -> None:
    found = digests.compose(client, public(settings))
    tom = one(found, "tom")
    assert [a["assignment_id"] for a in tom.figures["overdue"]] == [week.overdue.assignment_id]
    assert [a["assignment_id"] for a in tom.figures["due"]] == [week.soon.assignment_id]  # not the one in 20 days
    assert tom.subject == "stepwatch weekly, crm: coaching due 1, overdue 1"
    due_day = (today() - timedelta(days=2))
    assert f"- Maria Ivanova, Offer (mentor meeting): due {due_day:%b} {due_day.day}, {due_day.year}\n" \
           f"  {PUBLIC}/coaching/assignments/{week.overdue.assignment_id}?site=crm" in tom.text
    assert f"Open the coaching board: {PUBLIC}/coaching?site=crm&mentor=tom" in tom.text
    assert not [d for d in found if d.account == "tina"]  # nothing due: no digest
    assert {d.account for d in found} == {"dana", "sam", "tom"}  # no admin, no manager
    assert [d.account for d in digests.compose(client, settings, to="tom")] == ["tom"]
    assert digests.compose(client, settings, site="elsewhere") == []
    # Without STEPWATCH_PUBLIC_URL the links are paths.
    assert f"\n  /coaching/assignments/{week.overdue.assignment_id}?site=crm" in one(
        digests.compose(client, settings), "tom").text


def test_the_digests_are_due_from_the_configured_day_and_hour_to_the_end_of_the_week(settings: Settings) -> None:
    monday_6 = datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert digests.week_of(monday_6) == "2026-W49" == digests.week_of(monday_6 + timedelta(days=6, hours=17))
    assert not digests.due(settings, monday_6 - timedelta(minutes=1))
    assert digests.due(settings, monday_6) and digests.due(settings, monday_6 + timedelta(days=6, hours=17))
    thursday = settings.model_copy(update={"digest_day": "thursday", "digest_hour": 9})
    assert not digests.due(thursday, monday_6 + timedelta(days=3, hours=2))
    assert digests.due(thursday, monday_6 + timedelta(days=3, hours=3))
    assert not digests.due(settings.model_copy(update={"digest_day": "off"}), monday_6 + timedelta(days=3))


# -- a real SMTP server with STARTTLS ---------------------------------------------------------------------

def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stepwatch test SMTP")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Inbox:
    """aiosmtpd's handler: keeps what it is sent; refuses the first `fail` messages with 451."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.tries = 0
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's API
        self.tries += 1
        if self.tries <= self.fail:
            return "451 4.3.0 try again later"
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


class Login:
    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"stepwatch", SMTP_PASSWORD.encode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Smtp:
    def __init__(self, tmp: Path, inbox: Inbox):
        cert, key = certificate(tmp)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        self.client_tls = ssl.create_default_context(cafile=str(cert))  # checks the name, trusts only this cert
        self.port = free_port()
        self.inbox = inbox
        self.controller = Controller(inbox, hostname="127.0.0.1", port=self.port, tls_context=server_tls,
                                     require_starttls=True, authenticator=Login(), auth_required=True)

    def settings(self, settings: Settings) -> Settings:
        return public(settings, smtp_host="127.0.0.1", smtp_port=self.port, smtp_user="stepwatch",
                      smtp_password=SecretStr(SMTP_PASSWORD), smtp_from="stepwatch@example.com", smtp_starttls=True)

    def mail(self) -> Any:
        return partial(outbox.send_smtp, tls=self.client_tls)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[Smtp]:
    server = Smtp(tmp_path, Inbox())
    server.controller.start()
    yield server
    server.controller.stop()


def parts(message: Message) -> dict[str, str]:
    return {p.get_content_type(): p.get_payload(decode=True).decode(p.get_content_charset() or "utf-8")
            for p in message.walk() if not p.is_multipart()}


def test_digests_are_emailed_over_starttls_in_each_recipients_language_once_a_week(
        client: storage.Client, settings: Settings, week: Week, smtp: Smtp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    users.set_language(client, "tom", "ru", actor="test")
    mailing = smtp.settings(settings)
    now = datetime.now(UTC)
    report = digests.send(client, mailing, now)
    assert (report.composed, report.queued, report.no_address) == (3, 2, 1)  # sam has no address
    queued = outbox.messages(client)
    assert {(m.channel, m.recipient, m.topic) for m in queued} == {
        ("email", "dana@example.com", "digest.director"), ("email", "tom@example.com", "digest.trainer")}
    assert outbox.deliver_due(client, mailing, now=now, mail=smtp.mail()) == outbox.DeliveryReport(attempted=2,
                                                                                                   delivered=2)
    received = {to[0]: message for to, message in smtp.inbox.messages}
    dana, tom = received["dana@example.com"], received["tom@example.com"]
    assert dana["Subject"] == "stepwatch weekly, crm: 2.2 h lost a week" and dana["From"] == "stepwatch@example.com"
    assert dana["Content-Language"] == "en" and dana["Message-ID"].endswith("@stepwatch>")
    assert email.header.make_header(email.header.decode_header(tom["Subject"])).__str__() == \
        "stepwatch, неделя, crm: обучение в срок 1, просрочено 1"
    assert tom["Content-Language"] == "ru"
    for message in (dana, tom):
        body = parts(message)
        assert set(body) == {"text/plain", "text/html"}
        assert f"{PUBLIC}/" in body["text/plain"] and '<a href="https://stepwatch.example.com/' in body["text/html"]
    assert "Просрочено" in parts(tom)["text/plain"] and "Maria Ivanova" in parts(tom)["text/html"]

    # A second run the same week queues nothing and sends nothing.
    again = digests.send(client, mailing, now + timedelta(hours=5))
    assert (again.queued, again.already) == (0, 2)
    assert outbox.deliver_due(client, mailing, now=now + timedelta(hours=6), mail=smtp.mail()).attempted == 0
    assert len(smtp.inbox.messages) == 2
    # The next week, the next digest.
    assert digests.send(client, mailing, now + timedelta(days=7)).queued == 2

    everything = caplog.text + "".join(m.body + m.last_error for m in outbox.messages(client))
    assert SMTP_PASSWORD not in everything and SMTP_PASSWORD not in repr(mailing)


def test_a_refusing_smtp_server_is_retried_with_the_webhooks_backoff(
        client: storage.Client, settings: Settings, week: Week, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = Smtp(tmp_path, Inbox(fail=2))
    server.controller.start()
    try:
        mailing = server.settings(settings)
        now = datetime.now(UTC)
        digests.send(client, mailing, now, to="dana")
        assert outbox.deliver_due(client, mailing, now=now, mail=server.mail()) == outbox.DeliveryReport(
            attempted=1, failed=1)
        (first,) = outbox.messages(client)
        assert (first.status, first.attempts, first.last_error) == ("pending", 1, "SMTP 451 4.3.0 try again later")
        assert first.next_attempt_at - now > timedelta(seconds=29)
        assert outbox.deliver_due(client, mailing, now=now + timedelta(seconds=10), mail=server.mail()).attempted == 0
        outbox.deliver_due(client, mailing, now=now + timedelta(seconds=31), mail=server.mail())
        (second,) = outbox.messages(client)
        assert second.attempts == 2 and second.next_attempt_at - (now + timedelta(seconds=31)) > timedelta(seconds=59)
        report = outbox.deliver_due(client, mailing, now=now + timedelta(minutes=5), mail=server.mail())
        assert report == outbox.DeliveryReport(attempted=1, delivered=1)
        assert len(server.inbox.messages) == 1 and server.inbox.tries == 3
    finally:
        server.controller.stop()
    assert SMTP_PASSWORD not in caplog.text


def test_a_wrong_smtp_password_or_an_untrusted_certificate_fails_without_the_password(
        client: storage.Client, settings: Settings, week: Week, smtp: Smtp) -> None:
    wrong = smtp.settings(settings).model_copy(update={"smtp_password": SecretStr("not-the-password-x")})
    now = datetime.now(UTC)
    digests.send(client, wrong, now, to="dana")
    outbox.deliver_due(client, wrong, now=now, mail=smtp.mail())
    (message,) = outbox.messages(client)
    assert message.last_error.startswith("SMTP 535") and "not-the-password-x" not in message.last_error
    assert smtp.inbox.messages == []
    # The certificate is checked: the default context does not trust a self-signed one.
    outbox.deliver_due(client, smtp.settings(settings), now=now + timedelta(minutes=1))
    (message,) = outbox.messages(client)
    assert "CERTIFICATE_VERIFY_FAILED" in message.last_error and smtp.inbox.messages == []


# -- a real webhook ---------------------------------------------------------------------------------------

async def test_digests_are_posted_to_the_webhook_with_their_figures(
        aiohttp_server: Any, client: storage.Client, settings: Settings, week: Week) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    hooked = public(settings, webhook_url=str(server.make_url("/hook")))
    report = await asyncio.to_thread(digests.send, client, hooked)
    assert (report.queued, report.no_address) == (3, 0)  # every recipient: the webhook needs no address
    delivered = await asyncio.to_thread(outbox.deliver_due, client, hooked)
    assert delivered.delivered == 3
    by_account = {body["account"]: body for body in received}
    dana = by_account["dana"]
    assert dana["type"] == "digest.director" and dana["language"] == "en" and dana["week"] == digests.week_of(
        datetime.now(UTC))
    assert dana["text"].startswith("Hello, dana.\nYour teams on crm (north)")
    assert dana["figures"]["new"][0]["url"] == f"{PUBLIC}/drawdowns/{week.new.flag_id}?site=crm"
    assert dana["figures"]["new"][0]["manager_name"] == "Maxim Orlov"
    assert by_account["tom"]["figures"]["overdue"][0]["assignment_id"] == week.overdue.assignment_id
    assert (await asyncio.to_thread(digests.send, client, hooked)).queued == 0


# -- the command and the addresses ------------------------------------------------------------------------

def cli(client: storage.Client, settings: Settings, *argv: str) -> str:
    args = build_parser().parse_args(list(argv))
    args.settings = settings
    out = io.StringIO()
    assert args.func(args, client, out) == 0
    return out.getvalue()


def test_the_command_prints_with_dry_run_and_queues_without(client: storage.Client, settings: Settings, week: Week,
                                                            smtp: Smtp) -> None:
    mailing = smtp.settings(settings)
    printed = cli(client, mailing, "digests", "send", "--dry-run", "--to", "tom")
    assert printed.startswith("=== trainer tom (tom@example.com), site crm, ")
    assert "Subject: stepwatch weekly, crm: coaching due 1, overdue 1" in printed
    assert "digests composed: 1; nothing queued (--dry-run)" in printed
    assert outbox.messages(client) == []
    said = cli(client, mailing, "digests", "send", "--site", "crm")
    assert said.startswith("digests composed: 3; messages queued: 2, queued earlier this week: 0, recipients "
                           "without an e-mail address: 1")
    again = cli(client, mailing, "digests", "send")
    assert again.startswith("digests composed: 3; messages queued: 0, queued earlier this week: 2")


def test_an_account_email_is_checked_and_audited(client: storage.Client, site: sites.Site) -> None:
    users.add_user(client, "dora", "director", "long enough pw", teams=("north",), email="dora@example.com",
                   actor="test")
    assert users.get_user(client, "dora").email == "dora@example.com"
    for bad in ("dora", "dora@example", "a b@example.com", "x@y.z, other@evil.example"):
        with pytest.raises(InvalidInput):
            users.set_email(client, "dora", bad, actor="test")
    assert users.set_email(client, "dora", "", actor="test").email == ""
    assert users.get_user(client, "dora").email == ""



async def test_serve_queues_the_weeks_digests_when_due_and_delivers_them(
        aiohttp_client: Any, aiohttp_server: Any, client: storage.Client, settings: Settings, week: Week,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from stepwatch import app as application

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    monkeypatch.setattr(application, "DIGEST_CHECK_S", 0.2)
    monkeypatch.setattr(application, "WEBHOOK_INTERVAL_S", 0.2)
    today_name = digests.DAYS[datetime.now(UTC).weekday()]
    serving = public(settings, webhook_url=str(server.make_url("/hook")), digest_day=today_name, digest_hour=0,
                     secret_key=SECRET, analysis_interval_s=0)
    await aiohttp_client(create_app(serving))
    for _ in range(100):
        if len(received) >= 3:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.6)  # a few more checks: nothing is queued twice
    assert sorted(body["account"] for body in received) == ["dana", "sam", "tom"]
    assert len(outbox.messages(client)) == 3

    received.clear()
    off = serving.model_copy(update={"digest_day": "off"})
    assert application.digest_schedule not in create_app(off).cleanup_ctx
    assert application.digest_schedule in create_app(serving).cleanup_ctx


def test_an_address_is_given_and_removed_by_command(client: storage.Client, settings: Settings,
                                                      site: sites.Site) -> None:
    cli(client, settings, "users", "add", "dora", "--role", "director", "--team", "north", "--email",
        "dora@example.com")
    assert users.get_user(client, "dora").email == "dora@example.com"
    assert cli(client, settings, "users", "email", "dora", "d.ross@example.com") == \
        "user dora: digests go to d.ross@example.com\n"
    assert cli(client, settings, "users", "email", "dora", "") == "user dora: no e-mail\n"
    assert users.get_user(client, "dora").email == ""
