"""Step discovery: while a site's discovery is switched on (for a limited time, audited), the tracker
counts the pages that match no step by their sanitized path pattern, and the process page lists the
most visited patterns with "make this a step".

What is kept is a count of page views per site, pattern and day (`discovered_paths`): no time of day,
no manager, no session, no page content. Patterns are cleaned again here, whatever the sender did:
every segment that looks like an identifier, or holds anything but letters, digits and `_ . ~ -`,
becomes `:id` (docs/processes.md#discovery).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from clickhouse_connect.driver.client import Client

from kernel import audit, processes
from kernel.errors import InvalidInput
from kernel.storage import query_rows

DEFAULT_DAYS = 7
MAX_DAYS = 30
MAX_PATTERN = 300  # characters, as a URL rule
MAX_SEGMENTS = 12
_LITERAL = re.compile(r"^[A-Za-z0-9_.~\-]{1,64}$")
_WORDS = re.compile(r"[-_.~]+")


@dataclass(frozen=True)
class Window:
    """A site's discovery: on from `since` until `until` (UTC), switched by `set_by`."""

    site: str
    since: datetime
    until: datetime
    set_by: str
    reason: str

    def on(self, now: datetime | None = None) -> bool:
        return self.until > (now or datetime.now(UTC))


def sanitize(pattern: str) -> str | None:
    """The pattern as it is stored, or None when it cannot be one (not a path, too long, too deep).
    Identifiers and anything that is not a plain word become `:id`; a query or fragment is dropped."""
    if not isinstance(pattern, str) or not pattern.startswith("/") or len(pattern) > MAX_PATTERN:
        return None
    path = pattern.split("?")[0].split("#")[0]
    segments = path.split("/")[1:]
    if len(segments) > MAX_SEGMENTS:
        return None
    return "/" + "/".join(
        s if s in ("", ":id") or _LITERAL.match(s) and processes.clean(s) == s else ":id" for s in segments)


def switch_on(client: Client, site: str, days: int = DEFAULT_DAYS, *, actor: str, reason: str = "") -> Window:
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"discovery runs from 1 to {MAX_DAYS} days", field="days", code="discovery_days",
                           values={"max": str(MAX_DAYS)})
    now = datetime.now(UTC).replace(microsecond=0)
    until = now + timedelta(days=days)
    _write(client, site, until, actor, reason)
    audit.record(client, actor, "discovery.on", site, reason, {"days": days, "until": until.isoformat()})
    found = window(client, site)
    assert found is not None
    return found


def switch_off(client: Client, site: str, *, actor: str, reason: str = "") -> None:
    _write(client, site, datetime.now(UTC).replace(microsecond=0), actor, reason)
    audit.record(client, actor, "discovery.off", site, reason)


def _write(client: Client, site: str, until: datetime, actor: str, reason: str) -> None:
    client.insert("discovery_windows", [[site, until, actor, reason]],
                  column_names=["site", "until", "set_by", "reason"])


def window(client: Client, site: str) -> Window | None:
    """The site's latest switch while it is on, else None."""
    return open_windows(client).get(site)


def open_windows(client: Client) -> dict[str, Window]:
    """Every site whose discovery is on now (the collector reads this at each refresh)."""
    rows = query_rows(client, """
        SELECT site, argMax(at, at) AS since, argMax(until, at) AS until, argMax(set_by, at) AS set_by,
               argMax(reason, at) AS reason
        FROM discovery_windows GROUP BY site HAVING until > now()""")
    return {r["site"]: Window(r["site"], _utc(r["since"]), _utc(r["until"]), r["set_by"], r["reason"]) for r in rows}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def record(client: Client, site: str, counts: dict[str, int], day: date) -> None:
    """Add page views per pattern for a day (already sanitized and bounded by the collector)."""
    if counts:
        client.insert("discovered_paths", [[site, pattern, day, views] for pattern, views in counts.items()],
                      column_names=["site", "pattern", "day", "views"])


@dataclass(frozen=True)
class Discovered:
    """An unmatched pattern: its page views, their share of all unmatched views, first and last day."""

    pattern: str
    views: int
    share: float
    first_day: date
    last_day: date
    rule: str  # the URL rule "make this a step" proposes: identifiers as *
    title: str  # the suggested step title


def unmatched(client: Client, process: processes.Process | None, site: str, *, days: int = 30, limit: int = 20,
              language: str = "en") -> tuple[list[Discovered], int]:
    """The most viewed patterns of the last `days` that the current process still does not match, and
    the views of all of them; a pattern made a step since it was counted drops out."""
    rows = query_rows(client, """
        SELECT pattern, sum(views) AS views, min(day) AS first_day, max(day) AS last_day
        FROM discovered_paths
        WHERE site = {site:String} AND day >= today() - {days:UInt16}
        GROUP BY pattern ORDER BY views DESC, pattern LIMIT 1000""", {"site": site, "days": days})
    left = [r for r in rows if process is None or processes.match(process, _as_path(r["pattern"])) is None]
    total = sum(int(r["views"]) for r in left)
    return [Discovered(pattern=r["pattern"], views=int(r["views"]), share=int(r["views"]) / total if total else 0.0,
                       first_day=r["first_day"], last_day=r["last_day"], rule=rule_for(r["pattern"]),
                       title=suggest_title(r["pattern"], language)) for r in left[:limit]], total


def _as_path(pattern: str) -> str:
    # `:id` stands for some identifier: a rule with `*` there matches it, a literal rule does not.
    return pattern.replace(":id", "0")


def rule_for(pattern: str) -> str:
    return "/".join("*" if s == ":id" else s for s in pattern.split("/"))


# Words CRMs put in their paths, in Russian: the suggested title of a Russian reader's step.
RUSSIAN = {
    "account": "Компания", "accounts": "Компании", "activities": "Дела", "activity": "Дело", "calendar": "Календарь",
    "call": "Звонок", "calls": "Звонки", "cart": "Корзина", "case": "Обращение", "cases": "Обращения",
    "chat": "Чат", "checkout": "Оформление", "client": "Клиент", "clients": "Клиенты", "company": "Компания",
    "companies": "Компании", "contact": "Контакт", "contacts": "Контакты", "contract": "Договор",
    "contracts": "Договоры", "create": "Создание", "customer": "Клиент", "customers": "Клиенты",
    "deal": "Сделка", "deals": "Сделки", "delivery": "Доставка", "documents": "Документы", "edit": "Изменение",
    "email": "Почта", "history": "История", "invoice": "Счёт", "invoices": "Счета", "lead": "Лид",
    "leads": "Лиды", "mail": "Почта", "messages": "Сообщения", "needs": "Потребности", "new": "Создание",
    "notes": "Заметки", "offer": "Предложение", "offers": "Предложения", "opportunities": "Сделки",
    "opportunity": "Сделка", "order": "Заказ", "orders": "Заказы", "payment": "Оплата", "payments": "Платежи",
    "products": "Товары", "quote": "Предложение", "quotes": "Предложения", "reports": "Отчёты",
    "search": "Поиск", "settings": "Настройки", "summary": "Итоги", "task": "Задача", "tasks": "Задачи",
    "ticket": "Обращение", "tickets": "Обращения",
}


def suggest_title(pattern: str, language: str = "en") -> str:
    """A title from the path's last meaningful segment (not an identifier), humanised: /deals/:id/quotes ->
    "Quotes" (in Russian "Предложения" when the word is a common CRM one)."""
    words = [s for s in pattern.split("/") if s and s != ":id" and not s.startswith(":")]
    if not words:
        return "Главная" if language == "ru" else "Home"
    last = words[-1]
    if language == "ru" and last.lower() in RUSSIAN:
        return RUSSIAN[last.lower()]
    text = _WORDS.sub(" ", last).strip()
    return (text[:1].upper() + text[1:])[:200] or last
