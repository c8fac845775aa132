"""`stepwatch courses`, `mentors` and `coaching`: the coaching catalog, assignments and their effect.

Changes are made by whoever runs the command on the host (the audit log says cli:<os user>), who
may do everything, like an admin; `--as USER` acts with that account's rights instead (a
director's teams, a trainer's assignments), recorded as USER with `via` cli:<os user>.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import IO, Any

from clickhouse_connect.driver.client import Client

from kernel import audit, sites, users
from stepwatch.cli._common import CliError, _json_default, _line, _parse_date, format_duration, parse_duration


def _acting(args: argparse.Namespace, client: Client) -> Any:
    from coaching.permissions import ActingAs, Operator

    if getattr(args, "as_user", None):
        return ActingAs.of(users.get_user(client, args.as_user), via=audit.cli_actor())
    return Operator(audit.cli_actor())


def _dump(out: IO[str], value: Any) -> None:
    out.write(json.dumps(value, default=_json_default, indent=2) + "\n")


# --- courses and mentors --------------------------------------------------------------------------


def cmd_courses_add(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import catalog

    course = catalog.add_course(client, _acting(args, client), site=args.site, title=args.title, steps=args.step,
                                course_id=args.id, description=args.description, link=args.link,
                                expected_minutes=args.minutes, self_paced=not args.led, reason=args.reason)
    if args.json:
        _dump(out, course.as_dict())
    else:
        out.write(f"course {course.course_id} added to {course.site}: {course.title} "
                  f"({', '.join(course.steps)}; {'self-paced' if course.self_paced else 'led by a trainer'})\n")
    return 0


def cmd_courses_retire(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import catalog

    catalog.update_course(client, _acting(args, client), args.site, args.id, retired=True, reason=args.reason)
    out.write(f"course {args.id} retired: no new assignments (existing ones keep it)\n")
    return 0


def cmd_courses_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import catalog

    sites.get_site(client, args.site)
    listed = catalog.list_courses(client, args.site, step=args.step, include_retired=args.all)
    if args.json:
        _dump(out, [c.as_dict() for c in listed])
        return 0
    out.write(_line("course", "title", "steps", "minutes", "kind", "link"))
    for c in listed:
        out.write(_line(c.course_id + (" (retired)" if c.retired else ""), c.title, ",".join(c.steps),
                        c.expected_minutes or "-", "self-paced" if c.self_paced else "led", c.link or "-"))
    return 0


def cmd_mentors_set(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import catalog

    if not args.step and not args.none:
        raise CliError("name the steps this mentor coaches (--step, repeated), or --none to stop")
    mentor = catalog.set_mentor(client, _acting(args, client), site=args.site, name=args.name,
                                steps=[] if args.none else args.step, reason=args.reason)
    out.write(f"{mentor.name} mentors on {mentor.site}: {', '.join(mentor.steps) or 'nothing any more'}\n")
    return 0


def cmd_mentors_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import catalog

    sites.get_site(client, args.site)
    listed = catalog.list_mentors(client, args.site, step=args.step)
    if args.json:
        _dump(out, [m.as_dict() for m in listed])
        return 0
    out.write(_line("mentor", "steps", "set by", "set at"))
    for m in listed:
        out.write(_line(m.name, ",".join(m.steps), m.changed_by, f"{m.changed_at:%Y-%m-%d %H:%M}"))
    return 0


# --- assignments ------------------------------------------------------------------------------------


def cmd_assign(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import assignments
    from coaching.lifecycle import Target

    if not args.course and not args.mentor:
        raise CliError("name a course (--course ID) or a mentor for a meeting (--mentor USER)")
    kind = "course" if args.course else "mentor_meeting"
    a = assignments.assign(
        client, args.settings, _acting(args, client), site=args.site, manager=args.manager, step=args.step, kind=kind,
        due=_parse_date(args.due), target=Target(parse_duration(args.target), args.within),
        course_id=args.course or "", mentor=args.mentor or "", note=args.note, flag_id=args.flag or "",
        pre_days=args.pre_days, post_days=args.post_days)
    if args.json:
        _dump(out, a.as_dict())
        return 0
    out.write(f"assignment {a.assignment_id}: {_what(a)} for {a.manager} on {a.step}, due {a.due}; target median "
              f"at most {format_duration(a.target.max_ms)} by {a.deadline}"
              + (f"; flag {a.flag_id} is now in coaching" if a.flag_id else "") + "\n")
    return 0


def cmd_schedule(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import assignments

    a = assignments.schedule(client, args.settings, _acting(args, client), args.id, _parse_time(args.at),
                             reason=args.reason)
    out.write(f"assignment {a.assignment_id}: meeting at {a.scheduled_for:%Y-%m-%d %H:%M} UTC\n")
    return 0


def cmd_done(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import assignments

    a = assignments.mark_done(client, args.settings, _acting(args, client), args.id, note=args.note)
    first = a.evaluable_from(0)
    out.write(f"assignment {a.assignment_id}: done; evaluated automatically from {first}\n")
    return 0


def cmd_cancel(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import assignments

    a = assignments.cancel(client, args.settings, _acting(args, client), args.id, reason=args.reason)
    out.write(f"assignment {a.assignment_id}: cancelled ({a.cancel_reason})\n")
    return 0


def cmd_evaluate(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import measure

    if args.due:
        if args.id:
            raise CliError("give an assignment id or --due, not both")
        made = measure.evaluate_due(client, args.settings)
    elif args.id:
        made = [measure.evaluate_assignment(client, args.settings, args.id, _acting(args, client))]
    else:
        raise CliError("give an assignment id, or --due to evaluate everything that is due")
    if args.json:
        _dump(out, [m.as_dict() for m in made])
        return 0
    if not made:
        out.write("nothing to evaluate yet\n")
    for m in made:
        out.write(f"assignment {m.assignment_id}{_checkpoint(m.checkpoint)}: {m.verdict}\n")
        for reason in m.figures.get("reasons", []):
            out.write(f"  {reason}\n")
    return 0


def cmd_show(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import assignments, measure

    user = _acting(args, client)
    a = assignments.get(client, args.id, user)
    evaluated = measure.evaluations(client, a.assignment_id, user)
    can = assignments.actions(user, a)
    if args.json:
        _dump(out, {**a.as_dict(), "evaluations": [e.as_dict() for e in evaluated],
                    "actions": sorted(can.allowed), "refused": can.refused})
        return 0
    out.write(f"assignment {a.assignment_id} ({a.state})\n"
              f"  {_what(a)} for {a.manager} (team {a.team}) on step {a.step} of {a.site}\n"
              f"  due {a.due}; target median at most {format_duration(a.target.max_ms)} by {a.deadline}\n")
    if a.flag_id:
        out.write(f"  from flag {a.flag_id}\n")
    if a.note:
        out.write(f"  note: {a.note}\n")
    if a.scheduled_for:
        out.write(f"  meeting at {a.scheduled_for:%Y-%m-%d %H:%M} UTC\n")
    out.write("history:\n")
    for e in a.history:
        extra = {k: v for k, v in e.payload.items() if k in ("meeting_at", "note", "verdict", "checkpoint") and v}
        out.write(f"  {e.at:%Y-%m-%d %H:%M}  {e.type:12s} {e.actor}"
                  + (f"  ({e.reason})" if e.reason else "")
                  + (f"  {json.dumps(extra)}" if extra else "") + "\n")
    for m in evaluated:
        f = m.figures
        out.write(f"evaluation{_checkpoint(m.checkpoint)}: {m.verdict}"
                  + (f", target {'met' if m.target_met else 'not met'}" if m.target_met is not None else "")
                  + f" (before {m.pre_since} to {m.pre_until}, after {m.post_since} to {m.post_until}, "
                  f"peers: {f.get('peer_scope')})\n")
        for reason in f.get("reasons", []):
            out.write(f"  {reason}\n")
    if can.allowed:
        out.write(f"you can: {', '.join(sorted(can.allowed))}\n")
    return 0


def cmd_list(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import assignments

    sites.get_site(client, args.site)
    listed = assignments.list_assignments(client, args.site, _acting(args, client), state=args.state,
                                          manager=args.manager, step=args.step, mentor=args.mentor, team=args.team,
                                          open_only=args.open)
    if args.json:
        _dump(out, [a.as_dict() for a in listed])
        return 0
    out.write(_line("assignment", "state", "manager", "team", "step", "coaching", "due", "verdict"))
    for a in listed:
        out.write(_line(a.assignment_id[:8], a.state, a.manager, a.team, a.step, _what(a), a.due, a.verdict or "-"))
    return 0


def cmd_effectiveness(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import measure

    sites.get_site(client, args.site)
    rows = measure.effectiveness_by(client, args.site, _acting(args, client), by=args.by)
    if args.json:
        _dump(out, [r.as_dict() for r in rows])
        return 0
    out.write(_line(args.by, "evaluated", "improved", "share improved (95%)", "median effect (95%)", "lasted"))
    for r in rows:
        s = r.summary
        share = (f"{s.share_improved:.0%} ({s.share_improved_ci[0]:.0%}-{s.share_improved_ci[1]:.0%})"  # type: ignore[index]
                 if s.share_improved is not None else "-")
        effect = f"{s.median_effect_pct:+.0f}%" if s.median_effect_pct is not None else "-"
        if s.median_effect_ci_pct:
            effect += f" ({s.median_effect_ci_pct[0]:+.0f}% to {s.median_effect_ci_pct[1]:+.0f}%)"
        out.write(_line(r.key, s.assignments, s.improved, share, effect,
                        f"{s.lasted} of {s.followed_up}" if s.followed_up else "-"))
    return 0


def cmd_notifications(args: argparse.Namespace, client: Client, out: IO[str]) -> int:
    from coaching import outbox

    if args.retry:
        outbox.retry(client, args.retry)
        out.write(f"message {args.retry} queued again\n")
    if args.deliver:
        if not outbox.configured(args.settings):
            raise CliError("nothing to deliver by: set STEPWATCH_WEBHOOK_URL or STEPWATCH_SMTP_HOST")
        report = outbox.deliver_due(client, args.settings)
        out.write(f"delivered {report.delivered} of {report.attempted} due; {report.failed} to retry, "
                  f"{report.given_up} given up\n")
    listed = outbox.messages(client, site=args.site, status=args.status)
    if args.json:
        _dump(out, [m.as_dict() for m in listed])
        return 0
    out.write(_line("message", "status", "attempts", "topic", "created", "next attempt", "last error"))
    for m in listed:
        out.write(_line(m.message_id, m.status, m.attempts, m.topic, f"{m.created_at:%Y-%m-%d %H:%M}",
                        f"{m.next_attempt_at:%Y-%m-%d %H:%M}" if m.next_attempt_at else "-", m.last_error or "-"))
    return 0


def _what(a: Any) -> str:
    if a.kind == "course":
        return f"course {a.course_id}" + (f" with {a.mentor}" if a.mentor else "")
    return f"meeting with {a.mentor}"


def _checkpoint(days: int) -> str:
    return f" ({days}-day follow-up)" if days else ""


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise CliError(f"not a date and time: {text!r} (use YYYY-MM-DD HH:MM, UTC unless an offset is given)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as", dest="as_user", metavar="USER",
                        help="act with this account's rights (default: the host operator, like an admin)")


def register(sub: Any) -> None:
    p = sub.add_parser("courses", help="the coaching catalog: training courses and the steps they address")
    course_sub = p.add_subparsers(title="course commands", metavar="ACTION", required=True)
    a = course_sub.add_parser("add", help="add a course to a site's catalog")
    a.add_argument("site")
    a.add_argument("--title", required=True)
    a.add_argument("--step", action="append", required=True, help="a step the course addresses (repeat)")
    a.add_argument("--id", help="short name (default: from the title)")
    a.add_argument("--description", default="")
    a.add_argument("--link", default="", help="where it is taken (LMS URL)")
    a.add_argument("--minutes", type=int, default=0, help="expected duration")
    a.add_argument("--led", action="store_true", help="led by a trainer (default: self-paced)")
    a.add_argument("--reason", default="")
    a.add_argument("--json", action="store_true")
    _as(a)
    a.set_defaults(func=cmd_courses_add)
    a = course_sub.add_parser("list", help="a site's courses")
    a.add_argument("site")
    a.add_argument("--step", help="only courses addressing this step")
    a.add_argument("--all", action="store_true", help="include retired courses")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_courses_list)
    a = course_sub.add_parser("retire", help="stop offering a course for new assignments")
    a.add_argument("site")
    a.add_argument("id")
    a.add_argument("--reason", default="")
    _as(a)
    a.set_defaults(func=cmd_courses_retire)

    p = sub.add_parser("mentors", help="trainers who mentor, and the steps they coach")
    mentor_sub = p.add_subparsers(title="mentor commands", metavar="ACTION", required=True)
    a = mentor_sub.add_parser("set", help="set the steps a trainer coaches on a site")
    a.add_argument("site")
    a.add_argument("name", help="a trainer account")
    a.add_argument("--step", action="append", default=[], help="a step they coach (repeat)")
    a.add_argument("--none", action="store_true", help="they no longer mentor on this site")
    a.add_argument("--reason", default="")
    _as(a)
    a.set_defaults(func=cmd_mentors_set)
    a = mentor_sub.add_parser("list", help="a site's mentors")
    a.add_argument("site")
    a.add_argument("--step")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_mentors_list)

    p = sub.add_parser("coaching", help="assign courses and mentor meetings for a step, and see whether they worked")
    coach_sub = p.add_subparsers(title="coaching commands", metavar="ACTION", required=True)
    a = coach_sub.add_parser("assign", help="assign a course (--course) or a mentor meeting (--mentor)")
    a.add_argument("site")
    a.add_argument("manager", help="the manager id the tracker reports")
    a.add_argument("step")
    a.add_argument("--course", help="course id (add --mentor for a course led by a trainer)")
    a.add_argument("--mentor", help="the trainer who meets the manager, or runs the course")
    a.add_argument("--due", required=True, help="done by, YYYY-MM-DD")
    a.add_argument("--target", required=True, help="the step's median at most this (e.g. 4m)")
    a.add_argument("--within", type=int, required=True, help="days from today to reach the target")
    a.add_argument("--flag", help="the drawdown flag this answers (moves it to coaching)")
    a.add_argument("--note", default="")
    a.add_argument("--pre-days", type=int, default=28,
                   help="baseline days compared, before the fortnight that prompted the coaching (default 28)")
    a.add_argument("--post-days", type=int, default=14, help="days after it is done compared (default 14)")
    a.add_argument("--json", action="store_true")
    _as(a)
    a.set_defaults(func=cmd_assign)
    a = coach_sub.add_parser("schedule", help="set or move the meeting's date and time")
    a.add_argument("id", help="assignment id (or its first 6+ characters)")
    a.add_argument("--at", required=True, help="YYYY-MM-DD HH:MM (UTC unless an offset is given)")
    a.add_argument("--reason", default="")
    _as(a)
    a.set_defaults(func=cmd_schedule)
    a = coach_sub.add_parser("done", help="record that the meeting took place or the course was completed")
    a.add_argument("id")
    a.add_argument("--note", default="")
    _as(a)
    a.set_defaults(func=cmd_done)
    a = coach_sub.add_parser("cancel", help="cancel an open assignment (a reason is required)")
    a.add_argument("id")
    a.add_argument("--reason", required=True)
    _as(a)
    a.set_defaults(func=cmd_cancel)
    a = coach_sub.add_parser("evaluate", help="evaluate a done assignment now (or --due: all that are due)")
    a.add_argument("id", nargs="?")
    a.add_argument("--due", action="store_true", help="evaluate every assignment and follow-up that is due")
    a.add_argument("--json", action="store_true")
    _as(a)
    a.set_defaults(func=cmd_evaluate)
    a = coach_sub.add_parser("show", help="one assignment: its history and evaluations")
    a.add_argument("id")
    a.add_argument("--json", action="store_true")
    _as(a)
    a.set_defaults(func=cmd_show)
    a = coach_sub.add_parser("list", help="a site's assignments, open first, by due date")
    a.add_argument("site")
    a.add_argument("--state", choices=["assigned", "scheduled", "done", "evaluated", "cancelled"])
    a.add_argument("--manager")
    a.add_argument("--step")
    a.add_argument("--mentor")
    a.add_argument("--team")
    a.add_argument("--open", action="store_true", help="only open assignments")
    a.add_argument("--json", action="store_true")
    _as(a)
    a.set_defaults(func=cmd_list)
    a = coach_sub.add_parser("effectiveness", help="per course or mentor: share improved and median effect")
    a.add_argument("site")
    a.add_argument("--by", choices=["course", "mentor"], default="course")
    a.add_argument("--json", action="store_true")
    _as(a)
    a.set_defaults(func=cmd_effectiveness)
    a = coach_sub.add_parser("notifications", help="the webhook outbox: what was sent, what failed")
    a.add_argument("--site")
    a.add_argument("--status", choices=["pending", "delivered", "failed"])
    a.add_argument("--deliver", action="store_true", help="deliver what is due now")
    a.add_argument("--retry", metavar="MESSAGE_ID", help="queue a failed message again")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_notifications)
