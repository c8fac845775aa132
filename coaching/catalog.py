"""The coaching catalog of a site: training courses and mentors, with the steps each addresses.

A course (title, description, link, expected duration, the steps it addresses, self-paced or led
by a trainer) and a mentor (an account with the trainer role, and the steps they coach) are per
site, because steps are the steps of that site's process. Each change is a new version of the
row and an audit entry; nothing is deleted (a course is retired, a mentor's steps emptied).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client
from slugify import slugify

from coaching import permissions
from coaching._store import aware, utc
from coaching.permissions import Account
from kernel import audit, processes, sites, users
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.storage import query_rows

_COURSE_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,62}$")
_LINK = re.compile(r"^https?://\S+$")
COURSE_COLUMNS = ("site", "course_id", "title", "description", "link", "expected_minutes", "steps", "self_paced",
                  "retired", "changed_by", "changed_at", "version")


@dataclass(frozen=True)
class Course:
    site: str
    course_id: str
    title: str
    description: str
    link: str
    expected_minutes: int
    steps: tuple[str, ...]
    self_paced: bool
    retired: bool
    changed_by: str
    changed_at: datetime

    def addresses(self, step: str) -> bool:
        return step in self.steps

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "steps": list(self.steps), "changed_at": self.changed_at.isoformat()}


@dataclass(frozen=True)
class Mentor:
    site: str
    name: str
    steps: tuple[str, ...]
    changed_by: str
    changed_at: datetime

    def coaches(self, step: str) -> bool:
        return step in self.steps

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "steps": list(self.steps), "changed_at": self.changed_at.isoformat()}


def add_course(client: Client, user: Account, *, site: str, title: str, steps: list[str] | tuple[str, ...],
               course_id: str | None = None, description: str = "", link: str = "", expected_minutes: int = 0,
               self_paced: bool = True, reason: str = "") -> Course:
    """Add a course to a site's catalog; its id defaults to a slug of the title."""
    permissions.require(user, "courses")
    course_id = course_id or _slug(title)
    if not _COURSE_ID.match(course_id):
        raise InvalidInput("a course id is 1-63 lower-case letters, digits, _ . -, starting with a letter or digit")
    if any(c.course_id == course_id for c in list_courses(client, site, include_retired=True)):
        raise Conflict(f"course {course_id!r} exists already on site {site}")
    course = _checked(client, Course(site, course_id, title.strip(), description.strip(), link.strip(),
                                     expected_minutes, _steps(steps), self_paced, False, user.name,
                                     datetime.now(UTC)))
    _write_course(client, course)
    audit.record(client, user.name, "course.add", f"{site}/{course_id}", reason, {**_course_details(course),
                                                                                   **_via(user)})
    return course


def update_course(client: Client, user: Account, site: str, course_id: str, *, title: str | None = None,
                  steps: list[str] | tuple[str, ...] | None = None, description: str | None = None,
                  link: str | None = None, expected_minutes: int | None = None, self_paced: bool | None = None,
                  retired: bool | None = None, reason: str = "") -> Course:
    """Change a course (retired = no longer offered for new assignments; existing ones keep it)."""
    permissions.require(user, "courses")
    before = get_course(client, site, course_id)
    changes = {k: v for k, v in {"title": title, "description": description, "link": link,
                                 "expected_minutes": expected_minutes, "self_paced": self_paced,
                                 "retired": retired}.items() if v is not None}
    if steps is not None:
        changes["steps"] = _steps(steps)
    after = _checked(client, replace(before, **changes, changed_by=user.name, changed_at=datetime.now(UTC)))
    _write_course(client, after)
    audit.record(client, user.name, "course.update", f"{site}/{course_id}", reason,
                 {"before": _course_details(before), "after": _course_details(after), **_via(user)})
    return after


def list_courses(client: Client, site: str, *, step: str | None = None, include_retired: bool = False) -> list[Course]:
    rows = query_rows(client, f"SELECT {', '.join(COURSE_COLUMNS[:-1])} FROM courses FINAL "
                              "WHERE site = {site:String} ORDER BY course_id", {"site": site})
    found = [Course(**{**r, "steps": tuple(r["steps"]), "changed_at": aware(r["changed_at"])}) for r in rows]
    return [c for c in found if (include_retired or not c.retired) and (step is None or c.addresses(step))]


def get_course(client: Client, site: str, course_id: str) -> Course:
    for course in list_courses(client, site, include_retired=True):
        if course.course_id == course_id:
            return course
    raise NotFound(f"no course {course_id!r} on site {site}: stepwatch courses list {site}")


def set_mentor(client: Client, user: Account, *, site: str, name: str, steps: list[str] | tuple[str, ...],
               reason: str = "") -> Mentor:
    """Make a trainer a mentor of a site for these steps (replacing their list; empty = no longer)."""
    if not (user.role == "trainer" and user.name == name):  # a trainer may say what they coach themselves
        permissions.require(user, "mentors")
    sites.get_site(client, site)
    account = users.get_user(client, name)
    if account.role != "trainer":
        raise InvalidInput(f"{name} is a {account.role}, not a trainer: only trainer accounts mentor "
                           f"(stepwatch users add NAME --role trainer)")
    if account.disabled:
        raise InvalidInput(f"the account {name} is disabled")
    checked = _steps(steps)
    _check_steps(client, site, checked, allow_empty=True)
    before = next((m for m in list_mentors(client, site, include_retired=True) if m.name == name), None)
    mentor = Mentor(site, name, checked, user.name, datetime.now(UTC))
    client.insert("mentors", [[site, name, list(checked), user.name, utc(mentor.changed_at), time.time_ns()]],
                  column_names=["site", "name", "steps", "changed_by", "changed_at", "version"])
    audit.record(client, user.name, "mentor.set", f"{site}/{name}", reason,
                 {"steps": [list(before.steps) if before else [], list(checked)], **_via(user)})
    return mentor


def list_mentors(client: Client, site: str, *, step: str | None = None, include_retired: bool = False) -> list[Mentor]:
    rows = query_rows(client, "SELECT site, name, steps, changed_by, changed_at FROM mentors FINAL "
                              "WHERE site = {site:String} ORDER BY name", {"site": site})
    found = [Mentor(**{**r, "steps": tuple(r["steps"]), "changed_at": aware(r["changed_at"])}) for r in rows]
    return [m for m in found if (include_retired or m.steps) and (step is None or m.coaches(step))]


def get_mentor(client: Client, site: str, name: str) -> Mentor:
    for mentor in list_mentors(client, site):
        if mentor.name == name:
            return mentor
    raise NotFound(f"{name} is not a mentor on site {site}: stepwatch mentors set {site} {name} --step STEP")


def _checked(client: Client, course: Course) -> Course:
    if not course.title or len(course.title) > 200:
        raise InvalidInput("a course needs a title of at most 200 characters")
    if course.link and not _LINK.match(course.link):
        raise InvalidInput(f"a course link is an http(s) URL (got {course.link!r})")
    if not 0 <= course.expected_minutes <= 100_000:
        raise InvalidInput(f"expected duration must be 0 to 100000 minutes (got {course.expected_minutes})")
    sites.get_site(client, course.site)
    _check_steps(client, course.site, course.steps, allow_empty=False)
    return course


def _check_steps(client: Client, site: str, steps: tuple[str, ...], *, allow_empty: bool) -> None:
    if not steps and not allow_empty:
        raise InvalidInput("name at least one step it addresses")
    process = processes.latest(client, site)
    if process is None:
        raise InvalidInput(f"site {site} has no process yet: stepwatch process load FILE --site {site}")
    known = {s.key for s in process.steps}
    unknown = [s for s in steps if s not in known]
    if unknown:
        raise InvalidInput(f"site {site} has no step {', '.join(unknown)} (steps: {', '.join(sorted(known))})")


def _steps(steps: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.strip() for s in steps if s.strip()))


def _slug(title: str) -> str:
    """An id from a title in any script, transliterated: "Основы предложения" -> "osnovy-predlozheniia"."""
    return slugify(title, max_length=63, word_boundary=True) or "course"


def _course_details(c: Course) -> dict[str, object]:
    return {"title": c.title, "steps": list(c.steps), "link": c.link, "expected_minutes": c.expected_minutes,
            "self_paced": c.self_paced, "retired": c.retired}


def _via(user: Account) -> dict[str, str]:
    via = getattr(user, "via", "")
    return {"via": via} if via else {}


def _write_course(client: Client, c: Course) -> None:
    client.insert("courses", [[c.site, c.course_id, c.title, c.description, c.link, c.expected_minutes, list(c.steps),
                               c.self_paced, c.retired, c.changed_by, utc(c.changed_at), time.time_ns()]],
                  column_names=list(COURSE_COLUMNS))
