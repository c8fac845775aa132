"""Coaching: assign training and mentor meetings for a step, and measure whether they worked.

    catalog.py      courses and mentors of a site
    lifecycle.py    states, events and the fold (pure)
    permissions.py  who may do what, visibility first (pure)
    peers.py        what a viewer is shown of the peers a manager is measured against (pure)
    assignments.py  assign, schedule, mark done, cancel, get, list (event-sourced)
    evaluation.py   the statistics: before/after, difference-in-differences, verdict (pure)
    measure.py      evaluate from stored data, evaluate what is due, effectiveness, before/after chart
    outbox.py       notifications by webhook and e-mail, delivered with retries

docs/coaching.md explains the method, the states and the permissions.
"""

from coaching.assignments import actions, assign, cancel, get, list_assignments, mark_done, schedule
from coaching.catalog import (
    Course,
    Mentor,
    add_course,
    get_course,
    get_mentor,
    list_courses,
    list_mentors,
    set_mentor,
    update_course,
)
from coaching.lifecycle import CoachingAssignment, CoachingEvent, InvalidTransition, Target
from coaching.measure import before_after, effectiveness_by, evaluate_assignment, evaluate_due, evaluations
from coaching.outbox import deliver_due
from coaching.permissions import ActingAs, Operator, can, refusal, require

__all__ = [
    "ActingAs",
    "CoachingAssignment",
    "CoachingEvent",
    "Course",
    "InvalidTransition",
    "Mentor",
    "Operator",
    "Target",
    "actions",
    "add_course",
    "assign",
    "before_after",
    "can",
    "cancel",
    "deliver_due",
    "effectiveness_by",
    "evaluate_assignment",
    "evaluate_due",
    "evaluations",
    "get",
    "get_course",
    "get_mentor",
    "list_assignments",
    "list_courses",
    "list_mentors",
    "mark_done",
    "refusal",
    "require",
    "schedule",
    "set_mentor",
    "update_course",
]
