"""The compiled (msgspec) path of collector/events.py against the pydantic contract it mirrors.

The compiled path may give up on anything (the pydantic paths then decide), but whatever it
accepts, pydantic must accept too, and both must write the same rows. No storage needed.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import pytest

from collector.events import ParsedBatch, Validator, check_events
from kernel.settings import Settings
from kernel.storage import SESSION_EVENT_COLUMNS, VISIT_COLUMNS

SETTINGS = Settings()
VISIT_DEFAULTS = {"final": False, "customer": "", "path": "", "tracker": ""}
SESSION_DEFAULTS = {"customer": "", "outcome": "", "attributes": {}, "tracker": ""}


def now_ms() -> int:
    return int(time.time() * 1000)


def visit(**overrides: Any) -> dict[str, Any]:
    event = {"type": "visit", "visit_id": str(uuid.uuid4()), "seq": 1, "final": False, "manager": "manager-42",
             "session_id": str(uuid.uuid4()), "customer": "9f86d081884c7d65", "process": "sales", "step": "offer",
             "path": "/clients/:customer/offer", "started_at": now_ms() - 60_000, "active_ms": 30_000,
             "idle_ms": 5_000, "hidden_ms": 1_000, "tracker": "1.0.0"}
    event.update(overrides)
    return event


def session(**overrides: Any) -> dict[str, Any]:
    event = {"type": "session", "event_id": str(uuid.uuid4()), "action": "end", "session_id": "s-1",
             "manager": "manager-42", "customer": "ab12", "process": "sales", "at": now_ms() - 1000,
             "outcome": "sale", "tracker": "1.0.0"}
    event.update(overrides)
    return event


def rows(batch: ParsedBatch, compact: bool, pseudonyms: Any = None) -> list[dict[str, Any]]:
    """The stored rows, with ClickHouse's value for a missing optional field filled in."""
    checked = check_events(batch, site="crm", settings=SETTINGS, compact=compact, pseudonyms=pseudonyms,
                           attributes={"segment": ("vip",), "channel": ("phone",)})
    out = []
    for columns, lines in ((VISIT_COLUMNS, checked.visits), (SESSION_EVENT_COLUMNS, checked.sessions)):
        for line in lines:
            row = dict(zip(columns, json.loads(line), strict=True)) if compact else json.loads(line)
            out.append({**(VISIT_DEFAULTS if "visit_id" in row else SESSION_DEFAULTS), **row})
    return out


def compare(body: bytes) -> bool:
    """True if the compiled path accepted the body; fails if it accepted what pydantic refuses."""
    validator = Validator(SETTINGS)
    validator._rebuild()
    assert validator._compiled is not None
    if validator._compiled.parse(body) is None:
        return False
    slow = validator._bounded.validate_json(body)  # raises if pydantic refuses: the test fails
    for compact in (False, True):  # check_events consumes its batch: parse afresh
        fast = validator._compiled.parse(body)
        assert fast is not None
        slow = validator._bounded.validate_json(body)
        reference = ParsedBatch(slow["site"], slow.get("identity"), slow["events"], checked=True)
        assert (fast.site, fast.identity) == (reference.site, reference.identity)
        fast_rows = rows(fast, compact)
        assert fast_rows == rows(reference, compact)
        assert len(fast_rows) == len(reference.events)
    return True


def body_of(events: list[Any], **envelope: Any) -> bytes:
    return json.dumps({"site": "pk_1", **envelope, "events": events}, ensure_ascii=False).encode()


def test_the_tracker_batches_take_the_compiled_path() -> None:
    events = [session(action="start", outcome=""), *(visit(seq=i) for i in range(40)), session()]
    assert compare(body_of(events))
    assert compare(body_of([visit(final=True, customer="", path="", tracker="")]))
    minimal = {k: v for k, v in visit().items() if k not in ("final", "customer", "path", "tracker")}
    assert compare(body_of([minimal, {k: v for k, v in session().items() if k not in ("customer", "outcome")}]))
    assert compare(body_of([visit()], identity="1767225600.9c1f"))
    assert compare(body_of([visit(manager="Анна Петрова 😀", path="/клиенты/:customer")]))
    assert compare(body_of([visit(visit_id=str(uuid.uuid4()).upper())]))


def test_both_paths_store_the_same_customer_pseudonyms() -> None:
    from kernel.sites import Pseudonyms

    plain = {k: v for k, v in visit().items() if k != "customer"}
    body = body_of([visit(), session(), visit(customer=""), plain])
    validator = Validator(SETTINGS)
    validator._rebuild()
    assert validator._compiled is not None
    for compact in (False, True):
        fast = validator._compiled.parse(body)
        assert fast is not None
        slow = validator._bounded.validate_json(body)
        reference = ParsedBatch(slow["site"], slow.get("identity"), slow["events"], checked=True)
        fast_rows = rows(fast, compact, Pseudonyms("k" * 64))
        assert fast_rows == rows(reference, compact, Pseudonyms("k" * 64))
        assert [r["customer"] for r in fast_rows] == [Pseudonyms("k" * 64)("9f86d081884c7d65"), "", "",
                                                      Pseudonyms("k" * 64)("ab12")]


EDGE_CASES: dict[str, Any] = {
    "uuid without dashes": visit(visit_id=uuid.uuid4().hex),
    "uuid with dashes moved": visit(visit_id="0b6c12345-678-9abc-def0-123456789abc"),
    "uuid with a g": visit(visit_id="0b6c1234-5678-9abc-def0-123456789abg"),
    "uuid with unicode digits": visit(visit_id="0b6c1234-5678-9abc-def0-12345678٣abc"),
    "uuid with a dash too many": visit(visit_id="0b6c1234-5678-9abc-def0-1234567-9abc"),
    "uuid too long": visit(visit_id=str(uuid.uuid4()) + "0"),
    "session uuid": session(event_id="x" * 36),
    "key with a space": visit(step="the offer"),
    "key with unicode": visit(process="продажи"),
    "empty key": visit(session_id=""),
    "key of 64": visit(step="s" * 64),
    "key of 65": visit(step="s" * 65),
    "key with a trailing newline": visit(step="offer\n"),
    "customer with a dot": visit(customer="ab.cd"),
    "customer with a colon": session(customer="ab:cd"),
    "customer of 129": visit(customer="a" * 129),
    "path with a query": visit(path="/a?b=c"),
    "path with a fragment": visit(path="/a#b"),
    "path with DEL": visit(path="/a\x7fb"),
    "path of 512": visit(path="/" * 512),
    "path of 513": visit(path="/" * 513),
    "manager of 128 emoji": visit(manager="😀" * 128),
    "manager of 129": visit(manager="m" * 129),
    "manager with a tab": visit(manager="a\tb"),
    "manager with DEL": session(manager="a\x7fb"),
    "manager with a quote": visit(manager='O"Brien'),
    "empty manager": visit(manager=""),
    "tracker of 33": visit(tracker="1" * 33),
    "tracker with a newline": visit(tracker="1.0\n"),
    "outcome in capitals": session(outcome="SALE"),
    "outcome with a dash": session(outcome="no-sale"),
    "action in capitals": session(action="START"),
    "seq negative": visit(seq=-1),
    "seq of 2**31": visit(seq=2**31),
    "seq of 2**31 - 1": visit(seq=2**31 - 1),
    "seq as float": visit(seq=1.0),
    "seq as bool": visit(seq=True),
    "seq as string": visit(seq="1"),
    "final as int": visit(final=1),
    "final as null": visit(final=None),
    "future": visit(started_at=now_ms() + 3_600_000),
    "older than retention": session(at=now_ms() - 401 * 86_400_000),
    "started_at as float": visit(started_at=now_ms() - 1000.5),
    "duration at the maximum": visit(active_ms=SETTINGS.max_duration_ms),
    "duration above the maximum": visit(idle_ms=SETTINGS.max_duration_ms + 1),
    "negative duration": visit(hidden_ms=-1),
    "unknown type": {"type": "click"},
    "type in capitals": visit(type="Visit"),
    "unknown nested field": visit(extra={"a": [1, {"b": None}]}),
    "unknown site field": visit(site=5),
    "not an object": "visit",
    "attributes": session(action="start", attributes={"segment": "vip", "channel": "phone"}),
    "attributes empty": session(action="start", attributes={}),
    "attribute name in capitals": session(action="start", attributes={"Segment": "vip"}),
    "attribute value in capitals": session(action="start", attributes={"segment": "VIP"}),
    "attribute value with a space": session(action="start", attributes={"segment": "very vip"}),
    "attribute value empty": session(action="start", attributes={"segment": ""}),
    "attribute value of 33": session(action="start", attributes={"segment": "v" * 33}),
    "attribute value a number": session(action="start", attributes={"segment": 1}),
    "attribute value a list": session(action="start", attributes={"segment": ["vip"]}),
    "attributes a list": session(action="start", attributes=["vip"]),
    "five attributes": session(action="start", attributes={f"a{i}": "x" for i in range(5)}),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_agree_with_pydantic(name: str) -> None:
    compare(body_of([visit(), EDGE_CASES[name]]))


@pytest.mark.parametrize("envelope", [{"identity": None}, {"identity": "x" * 513}, {"identity": 5},
                                      {"site": ""}, {"site": "s" * 129}, {"site": None}])
def test_envelopes_agree_with_pydantic(envelope: dict[str, Any]) -> None:
    compare(body_of([visit()], **envelope))


@pytest.mark.parametrize("raw", [
    b'{"site":"k","events":[{"type":"visit","type":"session"}]}',
    b'{"site":"k","site":"j","events":[]}',
    b'{"site":"k","events":[],"events":{}}',
    b'{"site":"k","events":[]} x',
    b'\xef\xbb\xbf{"site":"k","events":[]}',
    b'{"site":"k\xff","events":[]}',
    b'{"site":"k","events":[' + b"[" * 5000 + b"]" * 5000 + b"]}",
])
def test_odd_json_agrees_with_pydantic(raw: bytes) -> None:
    compare(raw)


def test_duplicate_keys_take_the_last_value_on_both_paths() -> None:
    text = json.dumps({"site": "k", "events": [visit(step="offer")]})
    assert compare(text.replace('"step": "offer"', '"step": "first", "step": "offer"').encode())


@pytest.mark.slow
def test_fuzzed_events_agree_with_pydantic() -> None:
    rng = random.Random(11)
    values = [None, -1, 0, 2**31, 2**64, "", "x" * 40, "x" * 600, [], {}, 1.5, True, "😀" * 10, "a?b", "a b",
              str(uuid.uuid4()), "start", "sale", "ABC", now_ms(), SETTINGS.max_duration_ms + 1]
    accepted = 0
    for _ in range(3000):
        event = visit() if rng.random() < 0.7 else session()
        for _ in range(rng.randint(1, 2)):
            key = rng.choice([*event, "unknown"])
            if rng.random() < 0.15:
                event.pop(key, None)
            else:
                event[key] = rng.choice(values)
        accepted += compare(body_of([event]))
    assert accepted > 100  # the fuzz reaches accepted events too, not only refusals
