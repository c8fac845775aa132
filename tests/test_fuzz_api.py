"""Fuzzing every operation of /openapi.json: no input answers 5xx or hangs.

Schemathesis generates each operation's path, query and body from the document (values that fit
the schemas, and values that break them), as three callers: anonymous, an admin's API token and a
manager's (the anonymous caller sometimes with a made-up Bearer token). Each operation of the JSON
API is also tried as its HTML twin (the page, or the action as a form post), and a 200 from the JSON
API must match the answer the document describes. To reach the handlers, and not only the checks in
front of them, real values are mixed in: the site's name and public key, existing flag and
assignment ids, step keys, manager ids, teams, dates near today. The server runs in a thread of this
process, on the real engine, seeded once.

Bounded to about two minutes: examples per operation are set per caller (an admin reaches every
handler; an anonymous caller is refused at the door). Generation is derandomized so the suite is
repeatable; set STEPWATCH_FUZZ_EXAMPLES=200 and STEPWATCH_FUZZ_RANDOM=1 to explore further.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

import coaching
from coaching.lifecycle import Target
from kernel import migrations, sites, storage, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.coaching_helpers import add_sessions, build_org, today
from tests.dashboard_data import make_flag, set_bands
from tests.web_helpers import SECRET

TIMEOUT_S = 10.0  # one request longer than this is a hang
EXAMPLES = {"anonymous": 6, "manager": 15, "admin": 40}
SCALE = float(os.environ.get("STEPWATCH_FUZZ_EXAMPLES", "0") or 0) / EXAMPLES["admin"] or 1.0
ORIGIN = "https://crm.example.com"
LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")  # what a header carries


@dataclass
class Seeded:
    base: str
    tokens: dict[str, str]
    real: dict[str, list[Any]]  # real values by parameter name, mixed into the generated ones


class ServerThread:
    """The application served on a free port by an event loop in a thread of its own, so that the
    synchronous fuzzer (requests) can call it while the test waits."""

    def __init__(self, app: web.Application):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(app)
        self.call(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.call(site.start())
        self.port = self.runner.addresses[0][1]

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    def close(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# Slow; and one xdist worker runs this module, so its module-scoped data is built once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_fuzz_api")]


@pytest.fixture(scope="module")
def seeded(engine_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    config = Settings(data_dir=engine_dir, database=f"fuzz_{uuid.uuid4().hex[:10]}",
                      spool_dir=tmp_path_factory.mktemp("spool"), rate_limit_site=0, rate_limit_address=0,
                      group_commit_ms=2, spool_retry_s=0.2, secret_key=SECRET, analysis_interval_s=0)
    client = storage.connect(config)
    migrations.apply_pending(client, config.retention_days)
    site = sites.add_site(client, "crm", [ORIGIN], actor="test")
    sites.add_site(client, "two", ["https://two.example.com"], actor="test")
    org = build_org(client, "crm")
    set_bands(client, "crm")
    for n, (manager, median_s) in enumerate((("m-1", 300.0), ("m-2", 110.0), ("s-1", 70.0))):
        add_sessions(client, "crm", manager, today() - timedelta(days=21), today() - timedelta(days=1), median_s,
                     per_day=3, seed=n)
    flags = [make_flag(client, "crm", manager="m-1", team="north"),
             make_flag(client, "crm", kind="fast", manager="s-1", team="south", step="needs", status="acknowledged")]
    assignment = coaching.assign(client, config, org.dana, site="crm", manager="m-1", step="offer",
                                 kind="mentor_meeting", mentor="tom", due=today() + timedelta(days=10),
                                 target=Target(240_000, 30), note="fuzz")
    tokens = {"admin": users.create_token(client, "ada", "fuzz", actor="test"),
              "manager": users.create_token(client, "max", "fuzz", actor="test")}
    day = today().isoformat()
    real: dict[str, list[Any]] = {
        "site": ["crm", "two"], "site_key": [site.key],
        "flag_id": [f.flag_id for f in flags], "flag": [f.flag_id for f in flags],
        "assignment_id": [assignment.assignment_id, assignment.assignment_id[:8]],
        "message_id": [str(uuid.uuid4())],
        "step": ["offer", "needs", "closing"], "steps": ["offer", ["offer", "needs"]],
        "manager": ["m-1", "m-2", "s-1"], "name": ["tom", "tina"], "mentor": ["tom"],
        "team": ["north", "south"], "since": [(today() - timedelta(days=30)).isoformat()], "until": [day],
        "due": [(today() + timedelta(days=7)).isoformat()], "effective_from": [day],
        "meeting_at": [f"{day}T15:00:00"], "min": ["1m"], "reference": ["2m"], "max": ["4m"],
        "reason": ["fuzz"], "language": ["en"], "title": ["Fuzz course"], "target_minutes": [4],
        "within_days": [60], "kind": ["mentor_meeting"],
    }
    server = ServerThread(create_app(config))
    try:
        yield Seeded(f"http://127.0.0.1:{server.port}", tokens, real)
    finally:
        server.close()
        client.command(f"DROP DATABASE IF EXISTS {config.database} SYNC")
        client.close()


@pytest.fixture(scope="module")
def schema(seeded: Seeded) -> Any:
    doc = requests.get(seeded.base + "/openapi.json", timeout=TIMEOUT_S).json()
    return schemathesis.openapi.from_dict(doc)


def _mix(data: Any, values: dict[str, Any], real: dict[str, list[Any]]) -> None:
    """Replace some generated values by real ones, so that lookups find something."""
    for name in list(values):
        if name in real and data.draw(st.booleans(), label=f"real {name}"):
            values[name] = data.draw(st.sampled_from(real[name]), label=name)


def _body_fields(operation: Any) -> set[str]:
    body = operation.definition.raw.get("requestBody", {}).get("content", {}).get("application/json", {})
    return set(body.get("schema", {}).get("properties", {}))


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("caller", ["anonymous", "manager", "admin"])
def test_no_input_answers_5xx_or_hangs(schema: Any, seeded: Seeded, caller: str) -> None:
    headers = {"Authorization": f"Bearer {seeded.tokens[caller]}"} if caller in seeded.tokens else {}
    examples = max(1, round(EXAMPLES[caller] * SCALE))
    failures: list[str] = []
    statuses: dict[str, dict[int, int]] = {}
    started = time.monotonic()
    operations = _operations(schema)
    assert len(operations) > 30
    with requests.Session() as session:
        for operation in operations:
            try:
                fuzz_operation(operation, seeded, session, headers, examples, statuses)
            except AssertionError as exc:
                failures.append(f"{operation.label}: {exc}")
    sent = sum(n for counts in statuses.values() for n in counts.values())
    print(f"\n{caller}: {sent} requests over {len(operations)} operations in {time.monotonic() - started:.1f} s")
    for label, counts in statuses.items():
        print(f"  {label}: {dict(sorted(counts.items()))}")
    assert not failures, "\n\n".join(failures)


def fuzz_operation(operation: Any, seeded: Seeded, session: requests.Session, headers: dict[str, str],
                   examples: int, statuses: dict[str, dict[int, int]]) -> None:
    """Up to `examples` requests to one operation (valid and invalid by its schemas, real values mixed
    in); AssertionError with the request as curl on the first 5xx or hang."""
    strategy = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                         operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    declared = {p.name for p in operation.path_parameters} | {p.name for p in operation.query}
    fields = _body_fields(operation)
    extra = {"Origin": ORIGIN} if operation.path.startswith("/v1/") else {}
    counts = statuses.setdefault(operation.label, {})
    html_twin = operation.path.startswith("/api/v1/")
    answer = (operation.definition.raw["responses"]["200"].get("content", {}).get("application/json", {})
              .get("schema") if operation.path.startswith("/api/v1/") else None)

    @settings(max_examples=examples, deadline=None, database=None,
              derandomize=not os.environ.get("STEPWATCH_FUZZ_RANDOM"), phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(case=strategy, data=st.data())
    def fuzz(case: Any, data: Any) -> None:
        if case.path_parameters:
            _mix(data, case.path_parameters, seeded.real)
        query = dict(case.query or {})
        for name in declared - set(case.path_parameters or {}) - set(query):
            if name in seeded.real and data.draw(st.booleans(), label=f"add {name}"):
                query[name] = data.draw(st.sampled_from(seeded.real[name]), label=name)
        _mix(data, query, seeded.real)
        case.query = query
        if isinstance(case.body, dict) and operation.path == "/v1/events":
            if data.draw(st.booleans(), label="real site key"):
                case.body["site"] = seeded.real["site_key"][0]
        elif isinstance(case.body, dict) and data.draw(st.booleans(), label="realistic body"):
            # every field it takes that has a real value gets one, the rest as generated: an action
            # whose checks all pass, so the storage behind it is reached too
            for name in fields & set(seeded.real):
                case.body[name] = data.draw(st.sampled_from(seeded.real[name]), label=name)
            for name in set(case.body) - fields:
                del case.body[name]
            if "course_id" in case.body and data.draw(st.booleans(), label="no course"):
                del case.body["course_id"]
        elif isinstance(case.body, dict):
            _mix(data, case.body, seeded.real)
        session.cookies.clear()  # each request as the caller alone (an answer may have set a cookie)
        sent = dict(headers)
        if not headers and data.draw(st.booleans(), label="made-up token"):
            sent["Authorization"] = "Bearer " + data.draw(st.text(LATIN1, max_size=40), label="token")
        try:
            response = case.call(base_url=seeded.base, session=session, headers={**sent, **extra},
                                 timeout=TIMEOUT_S, allow_redirects=False)
        except requests.Timeout:
            raise AssertionError(f"no answer in {TIMEOUT_S} s: {case.as_curl_command()}") from None
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{response.status_code} {response.text[:300]}\n{case.as_curl_command()}"
        if answer is not None and response.status_code == 200 and case.query.get("format") != "csv":
            try:
                jsonschema.validate(response.json(), answer)
            except jsonschema.ValidationError as exc:
                raise AssertionError(f"the answer is not as documented: {exc.message}\n"
                                     f"{case.as_curl_command()}") from None
        if html_twin and data.draw(st.booleans(), label="the HTML twin too"):
            # the same handler as a page, or an action as a form post (a Bearer token signs them in too)
            url = seeded.base + case.formatted_path.removeprefix("/api/v1")
            form = ({k: v if isinstance(v, str) else str(v) for k, v in case.body.items()}
                    if isinstance(case.body, dict) else None)
            session.cookies.clear()
            try:
                page = session.request(operation.method.upper(), url, params=case.query, data=form, headers=sent,
                                       timeout=TIMEOUT_S, allow_redirects=False)
            except requests.Timeout:
                raise AssertionError(f"no answer in {TIMEOUT_S} s: {operation.method} {url} {case.query}") from None
            counts[page.status_code] = counts.get(page.status_code, 0) + 1
            assert page.status_code < 500, (f"{page.status_code} {page.text[:300]}\n{operation.method.upper()} "
                                             f"{url} {case.query} {form}")

    fuzz()
