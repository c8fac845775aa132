"""Sites: the CRM deployments allowed to send events, with their keys and allowed origins.

A site has a public ingest key (it sits in the tracker snippet, so it is no secret), a list of
origins whose pages may send events, and, when `require_identity` is set, a secret with which
the CRM's backend signs the manager id (see collector/identity.py). Changes are audited.

Customer references are pseudonymized twice. The tracker hashes them in the browser with the
site's salt, which is public (it is in the tracker's configuration), so that hash alone can be
reversed by trying every short reference. What is stored is the HMAC of that hash with the
site's `pseudonym_key`, which never leaves the backend (`Pseudonyms`).
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from babel.numbers import list_currencies
from clickhouse_connect.driver.client import Client

from kernel import audit, small_tables
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.storage import query_rows

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CURRENCIES = frozenset(list_currencies())  # ISO 4217 codes Babel can format (CLDR)
MAX_COST_PER_HOUR = 10_000_000


@dataclass(frozen=True)
class Site:
    name: str
    key: str
    secret: str
    salt: str
    origins: tuple[str, ...]
    require_identity: bool
    enabled: bool
    version: int
    pseudonym_key: str = ""  # empty only in a sites snapshot written before the key existed
    cost_per_hour: float | None = None  # what an hour of a manager's time costs; None: not set (hours only)
    currency: str = ""  # ISO 4217 code of cost_per_hour ("" when not set)

    def allows_origin(self, origin: str | None) -> bool:
        return origin is not None and normalize_origin(origin, strict=False) in self.origins


class Pseudonyms:
    """A site's stored form of customer references: the first 32 hex digits (128 bits) of
    HMAC-SHA256(pseudonym_key, reference). The same reference always gives the same pseudonym, so a
    customer's sessions still link; without the key, no guess of the reference can be checked.
    An empty reference (no customer) stays empty. Results are remembered, as a session's events
    repeat one reference."""

    REMEMBERED = 10_000

    def __init__(self, key: str):
        if not key:
            raise ValueError("a site without a pseudonym key cannot store customer references")
        self.pseudonym_key = key
        # HMAC (RFC 2104) from two SHA-256 states keyed once. Same values as hmac.digest(key, ref,
        # "sha256"), at 33-36 us per batch of 50 references against 74-77 us for hmac.digest
        # (timeit, 2026-12-04): one pseudonym per event of a busy collector.
        block = key.encode()
        block = (hashlib.sha256(block).digest() if len(block) > 64 else block).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._known: dict[str, str] = {"": ""}

    def __call__(self, reference: str) -> str:
        known = self._known.get(reference)
        if known is None:
            inner, outer = self._inner.copy(), self._outer.copy()
            inner.update(reference.encode())
            outer.update(inner.digest())
            known = outer.hexdigest()[:32]
            if len(self._known) >= self.REMEMBERED:
                self._known = {"": ""}
            self._known[reference] = known
        return known


def tracker_hash(salt: str, reference: str) -> str:
    """What the tracker sends for a customer reference: hex(sha256(salt + ":" + reference))."""
    return hashlib.sha256(f"{salt}:{reference}".encode()).hexdigest()


def normalize_origin(origin: str, strict: bool = True) -> str:
    """`https://CRM.example.com:443/` -> `https://crm.example.com`; raises InvalidInput if strict."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:  # e.g. "http://[::1": the Origin header is written by the sender
        if strict:
            raise InvalidInput(
                f"an origin is scheme://host[:port], e.g. https://crm.example.com; got {origin!r}") from None
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname or (parts.path not in ("", "/")):
        if strict:
            raise InvalidInput(f"an origin is scheme://host[:port], e.g. https://crm.example.com; got {origin!r}")
        return ""
    default_port = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        if strict:
            raise InvalidInput(f"bad port in origin {origin!r}") from None
        return ""
    netloc = parts.hostname.lower() + (f":{port}" if port and port != default_port else "")
    return f"{parts.scheme}://{netloc}"


@small_tables.remembered("sites")
def list_sites(client: Client) -> list[Site]:
    rows = query_rows(
        client,
        "SELECT name, key, secret, salt, origins, require_identity, enabled, version, pseudonym_key, cost_per_hour, "
        "currency "
        "FROM sites FINAL ORDER BY name",
    )
    return [Site(**{**row, "origins": tuple(row["origins"])}) for row in rows]


def get_site(client: Client, name: str) -> Site:
    for site in list_sites(client):
        if site.name == name:
            return site
    raise NotFound(f"no site named {name!r}")


def add_site(
    client: Client, name: str, origins: list[str], require_identity: bool = False, *, actor: str, reason: str = ""
) -> Site:
    if not _NAME.match(name):
        raise InvalidInput("a site name is 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit")
    if not origins:
        raise InvalidInput("a site needs at least one allowed origin (--origin https://crm.example.com)")
    if any(site.name == name for site in list_sites(client)):
        raise Conflict(f"a site named {name!r} exists already")
    site = Site(
        name=name,
        key="pk_" + secrets.token_urlsafe(18),
        secret="sk_" + secrets.token_urlsafe(32),
        salt=secrets.token_hex(16),
        origins=tuple(dict.fromkeys(normalize_origin(o) for o in origins)),
        require_identity=require_identity,
        enabled=True,
        version=time.time_ns(),
        pseudonym_key=secrets.token_hex(32),
    )
    _write(client, site)
    audit.record(client, actor, "site.add", name, reason,
                 {"origins": list(site.origins), "require_identity": require_identity})
    return site


def set_enabled(client: Client, name: str, enabled: bool, *, actor: str, reason: str = "") -> Site:
    site = get_site(client, name)
    changed = Site(**{**site.__dict__, "enabled": enabled, "version": time.time_ns()})
    _write(client, changed)
    audit.record(client, actor, "site.enable" if enabled else "site.disable", name, reason,
                 {"enabled": [site.enabled, enabled]})
    return changed


def set_cost(client: Client, name: str, cost_per_hour: float | None, currency: str = "", *, actor: str,
             reason: str = "") -> Site:
    """Set (or, with None, clear) what an hour of a manager's time costs the site, in an ISO 4217
    currency; the overview then shows the hours lost in money too. Audited as site.cost."""
    site = get_site(client, name)
    code = currency.strip().upper()
    if cost_per_hour is None:
        code = ""
    else:
        if not isinstance(cost_per_hour, int | float) or isinstance(cost_per_hour, bool) \
                or not math.isfinite(cost_per_hour) or not 0 < cost_per_hour <= MAX_COST_PER_HOUR:
            raise InvalidInput(f"cost_per_hour must be a number above 0 and at most {MAX_COST_PER_HOUR:,} "
                               f"(got {cost_per_hour!r})", field="cost_per_hour")
        if code not in CURRENCIES:
            raise InvalidInput(f"currency must be an ISO 4217 code such as EUR, USD or RUB (got {currency!r})",
                               field="currency")
        cost_per_hour = float(cost_per_hour)
    changed = Site(**{**site.__dict__, "cost_per_hour": cost_per_hour, "currency": code, "version": time.time_ns()})
    _write(client, changed)
    audit.record(client, actor, "site.cost", name, reason,
                 {"cost_per_hour": [site.cost_per_hour, cost_per_hour], "currency": [site.currency, code]})
    return changed


def _write(client: Client, site: Site) -> None:
    client.insert(
        "sites",
        [[site.name, site.key, site.secret, site.salt, list(site.origins), site.require_identity, site.enabled,
          datetime.now(UTC), site.version, site.pseudonym_key, site.cost_per_hour, site.currency]],
        column_names=["name", "key", "secret", "salt", "origins", "require_identity", "enabled", "created_at",
                      "version", "pseudonym_key", "cost_per_hour", "currency"],
    )
