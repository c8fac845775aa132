"""Signed identity: the CRM's backend vouches for the manager id the tracker reports.

Token = "<expiry>.<hex HMAC-SHA256(site secret, manager id + "\\n" + expiry)>", expiry in Unix
seconds. The newline cannot occur in a manager id (the event contract forbids control
characters), so no two (manager, expiry) pairs sign the same message.
"""

from __future__ import annotations

import hashlib
import hmac
import time


class IdentityRejected(Exception):
    """The token is missing, malformed, expired or forged."""


def sign(secret: str, manager: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"{manager}\n{int(expires)}".encode(), hashlib.sha256)
    return f"{int(expires)}.{mac.hexdigest()}"


def verify(secret: str, manager: str, token: str | None, now: float | None = None) -> None:
    """Return if `token` signs `manager` and has not expired; raise IdentityRejected otherwise."""
    if not token:
        raise IdentityRejected("this site requires a signed identity (stepwatch('identify', id, token))")
    expires_text, _, signature = token.partition(".")
    # isdigit() alone also takes other scripts' digits ("١٢٣", "²"), which int() reads or refuses;
    # and hmac.compare_digest refuses non-ASCII text: ASCII only, then.
    if not (token.isascii() and expires_text.isdigit() and len(expires_text) <= 12 and len(signature) == 64):
        raise IdentityRejected("identity token is malformed: expected <expiry in Unix seconds>.<64 hex digits>")
    if int(expires_text) < (time.time() if now is None else now):
        raise IdentityRejected("identity token has expired")
    if not hmac.compare_digest(sign(secret, manager, int(expires_text)), token):
        raise IdentityRejected("identity token does not match the manager id")
