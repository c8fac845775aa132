"""The drawdowns pages: the list (search, filters, sort), one flag with its history, and the moves
(acknowledge, resolve, dismiss and reopen with a reason), each audited with who and why."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from kernel import audit, flag_store, sites, storage, users
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.dashboard_data import load_process, make_flag
from tests.web_helpers import SECRET, csrf_of, login, make_accounts, page_csrf

XSS = "<script>alert(1)</script>"


@pytest.fixture
async def api(aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site) -> Any:
    make_accounts(client)
    load_process(client)
    return await aiohttp_client(create_app(settings.model_copy(update={"secret_key": SECRET})))


@pytest.fixture
def flags(client: storage.Client) -> dict[str, flag_store.StoredFlag]:
    """North: m1 slow on the offer (the costliest), m2 fast on the needs (oldest), a systemic flag, one
    resolved; south: m3 slow on the payment."""
    return {
        "m1": make_flag(client, "crm", manager="m1", step="offer", minutes_lost=90, opened_days_ago=2),
        "m2": make_flag(client, "crm", kind="fast", manager="m2", step="needs", minutes_lost=20, opened_days_ago=30,
                        median_ms=30_000),
        "systemic": make_flag(client, "crm", kind="systemic", manager="", managers=("m1", "m2"), step="contract",
                              minutes_lost=50, opened_days_ago=5),
        "old": make_flag(client, "crm", manager="m2", step="offer", status="resolved", minutes_lost=200),
        "m3": make_flag(client, "crm", team="south", manager="m3", step="payment", minutes_lost=70),
    }


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["flag_id"] for r in rows]


async def test_the_list_in_html_json_and_csv(api: Any, flags: dict[str, flag_store.StoredFlag]) -> None:
    await login(api, "ada")
    data = await (await api.get("/api/v1/drawdowns")).json()
    expected = [flags[k].flag_id for k in ("m1", "m3", "systemic", "m2")]  # active ones, most minutes first
    assert ids(data["flags"]) == expected
    html = await (await api.get("/drawdowns")).text()
    assert [m for m in re.findall(r'href="/drawdowns/([0-9a-f-]{36})"', html)] == expected
    assert "<caption>4 drawdowns, costliest first</caption>" in html
    assert 'scope="col"' in html and 'href="/managers/m1?site=crm"' in html and "2 managers of the team" in html
    assert "▼" in html and "▲" in html  # fast below, slow above: shapes, not colour alone
    exported = await api.get("/drawdowns?format=csv")
    rows = list(csv.DictReader(io.StringIO(await exported.text())))
    assert [r["flag_id"] for r in rows] == expected
    assert rows[2]["managers"] == "m1; m2" and rows[0]["minutes_lost_per_week"] == "90.0"
    api_csv = await api.get("/api/v1/drawdowns?format=csv&status=all")
    assert len(list(csv.DictReader(io.StringIO(await api_csv.text())))) == 5


async def test_search_filters_and_sort(api: Any, flags: dict[str, flag_store.StoredFlag]) -> None:
    await login(api, "ada")

    async def found(query: str) -> list[str]:
        response = await api.get("/api/v1/drawdowns?" + query)
        assert response.status == 200, await response.text()
        return ids((await response.json())["flags"])

    f = {k: v.flag_id for k, v in flags.items()}
    assert await found("manager=M2") == [f["systemic"], f["m2"]]  # case-insensitive, systemic lists its managers
    assert await found("manager=m2&status=all") == [f["old"], f["systemic"], f["m2"]]
    assert await found("step=offer&status=all") == [f["old"], f["m1"]]
    assert await found("kind=fast") == [f["m2"]]
    assert await found("kind=systemic") == [f["systemic"]]
    assert await found("status=resolved") == [f["old"]]
    assert await found("team=south") == [f["m3"]]
    assert await found("sort=age") == [f["m2"], f["systemic"], f["m3"], f["m1"]]  # opened 30, 5, 3, 2 days ago
    bad = await api.get("/api/v1/drawdowns?kind=lazy")
    assert bad.status == 400 and (await bad.json())["field"] == "kind"
    assert (await api.get("/api/v1/drawdowns?team=nowhere")).status == 404


async def test_a_director_sees_and_moves_only_the_flags_of_teams_they_lead(
        api: Any, client: storage.Client, flags: dict[str, flag_store.StoredFlag]) -> None:
    await login(api, "dora")  # leads north
    data = await (await api.get("/api/v1/drawdowns?status=all")).json()
    assert flags["m3"].flag_id not in ids(data["flags"]) and len(data["flags"]) == 4
    assert (await api.get("/api/v1/drawdowns?team=south")).status == 403
    south = flags["m3"].flag_id
    assert (await api.get(f"/drawdowns/{south}")).status == 403
    assert (await api.get(f"/api/v1/drawdowns/{south}")).status == 403
    token = await page_csrf(api, "/drawdowns")
    form = await api.post(f"/drawdowns/{south}/ack", data={"csrf": token}, allow_redirects=False)
    assert form.status == 403
    twin = await api.post(f"/api/v1/drawdowns/{south}/dismiss", json={"reason": "not mine"},
                          headers={"X-CSRF-Token": token})
    assert twin.status == 403 and "team" in (await twin.json())["error"]
    assert flag_store.get(client, south).status == "open"
    north = flags["m1"].flag_id
    moved = await api.post(f"/drawdowns/{north}/ack", data={"csrf": token, "reason": "talking to m1 on Monday"},
                           allow_redirects=False)
    assert moved.status == 303 and moved.headers["Location"] == f"/drawdowns/{north}"
    assert flag_store.get(client, north).status == "acknowledged"


async def test_acknowledge_is_stored_in_the_history_and_the_audit_log(
        api: Any, client: storage.Client, flags: dict[str, flag_store.StoredFlag]) -> None:
    flag = flags["m1"].flag_id
    await login(api, "dora")
    page = await (await api.get(f"/drawdowns/{flag}")).text()
    assert "<h1>Slow on Offer: m1</h1>" in page
    assert {f'action="/drawdowns/{flag}/{a}"' for a in ("ack", "resolve", "dismiss")} <= set(
        re.findall(r'action="[^"]+"', page))
    assert f'action="/drawdowns/{flag}/reopen"' not in page  # an open flag cannot be reopened
    response = await api.post(f"/drawdowns/{flag}/ack", data={"csrf": csrf_of(page), "reason": "seen"})
    assert response.status == 200 and "The drawdown is now acknowledged." in await response.text()
    history = flag_store.history(client, flag)
    assert [(h["from_status"], h["to_status"], h["actor"]) for h in history] == [
        ("", "open", "analysis"), ("open", "acknowledged", "dora")]
    (entry,) = audit.entries(client, action="flag.acknowledged")
    assert entry.actor == "dora" and entry.object == flag and entry.reason == "seen"
    assert entry.details["from"] == "open" and entry.details["manager"] == "m1"
    detail = await (await api.get(f"/api/v1/drawdowns/{flag}")).json()
    assert detail["flag"]["status"] == "acknowledged" and len(detail["history"]) == 2
    assert {a["name"] for a in detail["actions"]} == {"resolve", "dismiss"}
    exported = await api.get(f"/drawdowns/{flag}?format=csv")
    rows = list(csv.DictReader(io.StringIO(await exported.text())))
    assert [(r["to_status"], r["actor"]) for r in rows] == [("open", "analysis"), ("acknowledged", "dora")]


async def test_dismiss_needs_a_reason_shown_next_to_the_field(
        api: Any, client: storage.Client, flags: dict[str, flag_store.StoredFlag]) -> None:
    flag = flags["m1"].flag_id
    await login(api, "ada")
    token = await page_csrf(api, f"/drawdowns/{flag}")
    refused = await api.post(f"/api/v1/drawdowns/{flag}/dismiss", json={"reason": "   "},
                             headers={"X-CSRF-Token": token})
    assert refused.status == 400
    body = await refused.json()
    assert body["field"] == "reason" and "reason" in body["error"]
    back = f"/drawdowns/{flag}"
    form = await api.post(f"{back}/dismiss", data={"csrf": token, "reason": "", "next": back}, allow_redirects=False)
    assert form.status == 303 and form.headers["Location"] == f"/drawdowns/{flag}"
    page = await (await api.get(f"/drawdowns/{flag}")).text()
    shown = re.search(r'<textarea id="reason-dismiss"[^>]*aria-invalid="true" aria-describedby="error-reason-dismiss"'
                      r'[^>]*></textarea>\s*<p class="field-error" id="error-reason-dismiss" role="alert">([^<]+)</p>',
                      page)
    assert shown and "Give a reason" in shown.group(1)
    assert 'id="error-reason-ack"' not in page  # only next to the field of the form that failed
    assert flag_store.get(client, flag).status == "open"

    ok = await api.post(f"/api/v1/drawdowns/{flag}/dismiss", json={"reason": "new CRM page for the offer"},
                        headers={"X-CSRF-Token": token})
    assert ok.status == 200
    assert await ok.json() == {"flag_id": flag, "from_status": "open", "status": "dismissed",
                               "message": "The drawdown is now dismissed."}
    again = await api.post(f"/api/v1/drawdowns/{flag}/ack", json={}, headers={"X-CSRF-Token": token})
    assert again.status == 409 and "dismissed" in (await again.json())["error"]
    reopen = await api.post(f"/api/v1/drawdowns/{flag}/reopen", json={}, headers={"X-CSRF-Token": token})
    assert reopen.status == 400 and (await reopen.json())["field"] == "reason"
    reopen = await api.post(f"/api/v1/drawdowns/{flag}/reopen", json={"reason": "it came back"},
                            headers={"X-CSRF-Token": token})
    assert reopen.status == 200 and flag_store.get(client, flag).status == "open"
    reasons = [(e.action, e.actor, e.reason) for e in audit.entries(client, obj=flag)]
    assert ("flag.dismissed", "ada", "new CRM page for the offer") in reasons
    assert ("flag.open", "ada", "it came back") in reasons


async def test_a_post_without_the_csrf_token_is_refused(api: Any, client: storage.Client,
                                                        flags: dict[str, flag_store.StoredFlag]) -> None:
    flag = flags["m1"].flag_id
    await login(api, "ada")
    assert (await api.post(f"/drawdowns/{flag}/ack", data={}, allow_redirects=False)).status == 403
    assert (await api.post(f"/drawdowns/{flag}/ack", data={"csrf": "forged"}, allow_redirects=False)).status == 403
    assert (await api.post(f"/api/v1/drawdowns/{flag}/ack", json={})).status == 403
    assert flag_store.get(client, flag).status == "open"
    token = users.create_token(client, "ada", "script", actor="test")  # a token carries no ambient cookie
    api.session.cookie_jar.clear()
    scripted = await api.post(f"/api/v1/drawdowns/{flag}/ack", json={}, headers={"Authorization": f"Bearer {token}"})
    assert scripted.status == 200 and flag_store.get(client, flag).status == "acknowledged"


@pytest.mark.parametrize("name", ["tom", "max", "sam"])
async def test_trainers_and_managers_are_refused(api: Any, client: storage.Client, name: str,
                                                 flags: dict[str, flag_store.StoredFlag]) -> None:
    flag = flags["m1"].flag_id
    await login(api, name)
    for path in ("/drawdowns", f"/drawdowns/{flag}"):
        assert (await api.get(path, allow_redirects=False)).status == 403
        assert (await api.get("/api/v1" + path)).status == 403
    token = csrf_of(await (await api.get("/drawdowns")).text())
    assert (await api.post(f"/drawdowns/{flag}/ack", data={"csrf": token}, allow_redirects=False)).status == 403
    assert (await api.post(f"/api/v1/drawdowns/{flag}/ack", json={}, headers={"X-CSRF-Token": token})).status == 403
    assert flag_store.get(client, flag).status == "open"


async def test_anonymous_goes_to_login_and_the_api_answers_401(api: Any,
                                                               flags: dict[str, flag_store.StoredFlag]) -> None:
    flag = flags["m1"].flag_id
    for path in ("/drawdowns", f"/drawdowns/{flag}"):
        response = await api.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/login?next=")
        assert (await api.get("/api/v1" + path)).status == 401
    assert (await api.post(f"/drawdowns/{flag}/ack", data={}, allow_redirects=False)).headers["Location"] == "/login"
    assert (await api.post(f"/api/v1/drawdowns/{flag}/ack", json={})).status == 401


async def test_unknown_flags_are_404(api: Any) -> None:
    await login(api, "ada")
    assert (await api.get("/drawdowns/00000000-0000-0000-0000-000000000000")).status == 404
    assert (await api.get("/api/v1/drawdowns/not-a-flag")).status == 404
    token = await page_csrf(api, "/drawdowns")
    missing = await api.post("/api/v1/drawdowns/00000000-0000-0000-0000-000000000000/ack", json={},
                             headers={"X-CSRF-Token": token})
    assert missing.status == 404


async def test_script_in_a_manager_id_or_step_name_is_escaped(api: Any, client: storage.Client) -> None:
    flag = make_flag(client, "crm", manager=XSS, step=XSS).flag_id
    await login(api, "ada")
    for path in ("/drawdowns", f"/drawdowns/{flag}"):
        html = await (await api.get(path)).text()
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "/managers/%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in html
    detail = await (await api.get(f"/api/v1/drawdowns/{flag}")).json()
    assert detail["flag"]["manager"] == XSS  # JSON carries the value itself: escaping is the HTML's job


@pytest.mark.slow
async def test_the_list_is_paged_and_the_export_has_every_flag(api: Any, client: storage.Client) -> None:
    made = [make_flag(client, "crm", manager=f"m-{i:03d}", minutes_lost=float(i)) for i in range(105)]
    await login(api, "ada")
    first = await (await api.get("/api/v1/drawdowns")).json()
    assert (first["total"], first["page"], first["pages"], len(first["flags"])) == (105, 1, 2, 100)
    assert first["flags"][0]["flag_id"] == made[-1].flag_id  # the costliest first
    second = await (await api.get("/api/v1/drawdowns?page=2")).json()
    assert [f["flag_id"] for f in second["flags"]] == [f.flag_id for f in reversed(made[:5])]
    html = await (await api.get("/drawdowns")).text()
    assert 'rel="next"' in html and "page 1 of 2" in html
    assert (await api.get("/api/v1/drawdowns?page=3")).status == 400
    assert (await api.get("/api/v1/drawdowns?page=zero")).status == 400
    exported = list(csv.DictReader(io.StringIO(await (await api.get("/drawdowns?format=csv")).text())))
    assert len(exported) == 105
