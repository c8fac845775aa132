"""The documentation stays true: every setting and every event field is documented."""

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
