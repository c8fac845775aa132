"""The documentation stays true: every setting and every event field is documented, and the docs
describe the product, not the history of their writing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector.events import SessionEvent, VisitEvent
from kernel.settings import Settings, env_name

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def readme_table_variables() -> set[str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(STEPWATCH_[A-Z_]+)` \|", section, flags=re.MULTILINE))


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme_table(field: str) -> None:
    assert env_name(field) in readme_table_variables()


def test_the_readme_table_lists_no_unknown_setting() -> None:
    assert readme_table_variables() == {env_name(f) for f in Settings.model_fields}


def test_readme_starts_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    assert "stepwatch" in blocks[0] and "pip install" in blocks[0]
    assert blocks[1].strip() == "./scripts/test"
    assert "./scripts/test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("model", [VisitEvent, SessionEvent])
def test_every_event_field_is_in_the_ingest_doc(model: type) -> None:
    doc = (REPO / "docs" / "ingest.md").read_text()
    for field in model.__annotations__:
        assert f"`{field}`" in doc, field


# The docs describe the product as it is; the history of their writing stays in git. These are the
# ways that history creeps in ("session 3's machine", "runs of session 4", "this session's code").
# Product sessions (service, login) stay allowed: "a service session", "signing out ends that
# session", "interrupted sessions 3-8 times longer". In product prose write "the session" rather
# than "this session".
WRITING_HISTORY = re.compile(
    r"\bsession \d+"
    r"|\bsessions \d+(?:, \d+)* (?:and|to) \d+\b"
    r"|\bsessions? of (?:this|that) (?:run|work)\b"
    r"|\b(?:this|last|earlier) session\b",
    flags=re.IGNORECASE,
)
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "tracker_js" / "ARCHITECTURE.md"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_describe_the_product_not_their_writing(path: Path) -> None:
    text = path.read_text()
    found = [(text.count("\n", 0, m.start()) + 1, m.group()) for m in WRITING_HISTORY.finditer(text)]
    assert not found, f"{path.relative_to(REPO)} (line, words): {found}"


@pytest.mark.parametrize("text", [
    "on session 3's machine", "Runs of session 4 (2026-12-03)", "Session 5", "sessions 3 and 4",
    "the sessions of this run", "this session's slower machine", "the code at the start of this session",
    "in the last session", "an earlier session measured it",
])
def test_the_history_check_sees_history(text: str) -> None:
    assert WRITING_HISTORY.search(text)


@pytest.mark.parametrize("text", [
    "a service session", "the login session ends", "signing out ends that session", "a session's first start",
    "1.5% interrupted sessions 3-8 times longer", "sessions per day", "the previous session ends",
    "40-80 sessions a window", "session_steps", "one session's time on a step",
])
def test_the_history_check_lets_product_words_be(text: str) -> None:
    assert not WRITING_HISTORY.search(text)


def test_the_architecture_doc_names_every_top_level_package() -> None:
    from tests.test_layers import OURS

    doc = (REPO / "docs" / "architecture.md").read_text()
    for package in OURS:
        assert f"`{package}/" in doc, package
