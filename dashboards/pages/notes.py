"""A manager's notes on their own figures (kernel/notes.py), written and withdrawn from My figures.

    POST /me/notes                      step, week (any day of it) or flag_id, text
    POST /me/notes/{note_id}/withdraw

Only manager accounts, and only about themselves: the manager is always the account's own id, a
step must be one of the site's process, and a flag must be one of theirs. Those who see the
manager's figures read the notes on the manager and drawdown pages.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client

from dashboards.auth import Viewer
from dashboards.i18n import Translator
from dashboards.web import DONE, SITE, add_action, answer, chosen_site, day, day_param, run, text, uuid_id
from kernel import flag_store, notes, processes
from kernel.errors import Forbidden, InvalidInput, NotFound
from kernel.users import User

ROLES = ("manager",)


def write_note(client: Client, user: User, site: str, fields: dict[str, Any], _: Translator) -> notes.Note:
    process = processes.latest(client, site)
    steps = {s.key for s in process.steps} if process else set()
    flag_id = str(fields.get("flag_id") or "")
    step = str(fields.get("step") or "")
    if flag_id:
        try:
            flag = flag_store.get(client, flag_id)
        except NotFound:
            raise InvalidInput(_("me.note_no_flag"), field="flag_id") from None
        if flag.site != site or (flag.manager != user.manager_id and user.manager_id not in flag.managers):
            raise InvalidInput(_("me.note_no_flag"), field="flag_id")
        step = flag.step
    elif step not in steps:
        raise InvalidInput(_("me.note_no_step"), field="step")
    written = str(fields.get("text") or "").strip()
    if not written:
        raise InvalidInput(_("me.note_empty"), field="text")
    if len(written) > notes.MAX_TEXT:
        raise InvalidInput(_("me.note_too_long", n=notes.MAX_TEXT, length=len(written)), field="text")
    week = day_param(str(fields.get("week") or ""), "week")
    if not flag_id and week is None:
        raise InvalidInput(_("me.note_no_week"), field="week")
    return notes.add_note(client, site, user.manager_id, step=step, week=None if flag_id else week,
                          flag_id=flag_id, text=str(fields.get("text") or ""), actor=user.name)


async def add_note(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    """Attach a note to a week of one of your steps, or to one of your flags."""
    if not who.user.manager_id:
        raise Forbidden("this manager account is linked to no manager id", code="no_manager_id")
    _ = Translator(who.user.language)
    site, _names = await chosen_site(request)
    note = await run(request, write_note, who.user, site, fields, _)
    return {"note_id": note.note_id, "step": note.step, "week": note.week, "flag_id": note.flag_id or None,
            "message": _("me.note_added"), "redirect": f"/me?site={site}#notes"}


async def withdraw_note(request: web.Request, who: Viewer, fields: dict[str, Any]) -> dict[str, Any]:
    """Withdraw one of your notes (the audit log keeps it)."""
    _ = Translator(who.user.language)
    site, _names = await chosen_site(request)
    note_id = request.match_info["note_id"]
    await run(request, notes.withdraw, site, who.user.manager_id, note_id, actor=who.user.name)
    return {"note_id": note_id, "message": _("me.note_withdrawn"), "redirect": f"/me?site={site}#notes"}


def register(app: web.Application) -> None:
    add_action(app, "/me/notes", add_note, roles=ROLES, name="me_note_add", query=(SITE,), body=(
        text("step", "the step's key (not needed with flag_id)"),
        day("week", "any day of the week the note is on"),
        uuid_id("flag_id", "one of your flags, instead of a week"),
        text("text", f"the note, at most {notes.MAX_TEXT} characters", required=True),
        text("form", "which of the page's note forms sent it (its error is shown next to it)")),
        response=answer(note_id="string", step="string", week="string?", flag_id="string?", **DONE))
    add_action(app, "/me/notes/{note_id}/withdraw", withdraw_note, roles=ROLES, name="me_note_withdraw",
               query=(SITE,), path_params=(uuid_id("note_id", "the note's id", required=True),),
               response=answer(note_id="string", **DONE))
