"""The extension's configuration resolution (src/config.js, run under node), its reproducible build, and the
managed storage schema against what the /extension page writes and docs/extension.md's policy example.

The managed-storage path in a browser needs a policy file only root may write
(test_extension.py::test_a_policy_configures_the_extension_and_wins_over_a_pasted_link); here the same
function the service worker calls decides between a policy's configuration and a pasted link's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dashboards.pages.extension import extension_config, extension_id, setup_link
from kernel import processes, sites
from tests.browser.servers import TRACKER_JS
from tests.browser_extension.conftest import EXTENSION, REPO, build_extension

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="no node")

GOOD = {"collector": "https://stepwatch.example", "site": "pk_abc", "origins": ["https://crm.example.com"],
        "identity": {"element": "#user"}}


def js(expression: str, *args: Any) -> Any:
    """`expression` evaluated under node with config.js loaded as `C` and the arguments as `args`."""
    script = f"const C = require({json.dumps(str(EXTENSION / 'src' / 'config.js'))});" \
             f"const args = {json.dumps(args)};process.stdout.write(JSON.stringify({expression}))"
    out = subprocess.run(["node", "-e", script], check=True, capture_output=True, text=True, timeout=30).stdout
    return json.loads(out) if out else None


def test_a_policy_wins_over_a_pasted_link() -> None:
    pasted = {**GOOD, "site": "pk_pasted"}
    resolved = js("C.resolve(args[0], args[1])", GOOD, pasted)
    assert resolved["source"] == "policy" and resolved["config"]["site"] == "pk_abc"
    assert js("C.resolve({}, args[0])", pasted)["source"] == "link"  # an empty managed storage sets nothing
    assert js("C.resolve(null, null)") == {"source": None, "config": None, "problems": ["configNone"]}


def test_a_broken_policy_is_reported_not_replaced_by_a_pasted_link() -> None:
    resolved = js("C.resolve(args[0], args[1])", {"site": "pk_abc"}, GOOD)
    assert resolved["source"] == "policy" and resolved["config"] is None
    assert resolved["problems"] == ["configCollector", "configOrigins", "configIdentity"]


def test_the_page_s_setup_link_reads_back_as_its_configuration() -> None:
    config = {**GOOD, "identity": {"signin": "https://stepwatch.example"}, "stepwatch": "https://stepwatch.example",
              "titles": {"offer": "Предложение"}}
    link = setup_link("https://stepwatch.example", config)
    assert js("C.fromLink(args[0])", link) == config
    assert js("C.check(C.fromLink(args[0])).config", link) == config
    assert js("C.fromLink(args[0])", "https://stepwatch.example/extension/setup") is None
    assert js("C.fromLink(args[0])", "https://stepwatch.example/other#" + link.split("#")[1]) is None


@pytest.mark.parametrize("origin", ["https://crm.example.com/path", "https://*.example.com", "ftp://crm.example.com",
                                    "crm.example.com", "https://crm.example.com?x=1"])
def test_an_origin_is_an_origin_never_a_wider_pattern(origin: str) -> None:
    resolved = js("C.check(args[0])", {**GOOD, "origins": [origin]})
    assert resolved["config"] is None and resolved["problems"] == ["configOrigins"]


def test_a_value_is_a_dotted_window_path_and_permissions_cover_exactly_the_origins() -> None:
    assert js("C.check(args[0]).problems", {**GOOD, "identity": {"variable": "window.crm['id']"}}) == ["configIdentity"]
    signin = {**GOOD, "identity": {"signin": "https://stepwatch.example:8443/"}}
    assert js("C.permissionOrigins(C.check(args[0]).config)", signin) == [
        "https://crm.example.com/*", "https://stepwatch.example:8443/*"]


def test_the_popup_names_the_step_by_the_trackers_own_rules() -> None:
    steps = [{"key": "offer", "patterns": ["/clients/{customer}/offer", "/*/clients/{customer}/offer"]},
             {"key": "needs", "patterns": ["/clients/{customer}/needs"]}]
    assert js("args[1].map(p => C.stepOf(args[0], p))", steps,
              ["/clients/C-1/offer", "/app/clients/C-1/offer", "/clients/C-1/needs", "/clients/C-1", "/"]) == [
        "offer", "offer", "needs", None, None]


def test_the_build_is_reproducible_and_carries_the_tracker_unchanged(tmp_path: Path) -> None:
    first = build_extension(tmp_path / "a", "https://crm.example.com").parent / "extension.zip"
    second = build_extension(tmp_path / "b", "https://crm.example.com").parent / "extension.zip"
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert names == sorted(names) and "tracker.js" in names and "manifest.json" in names
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())
        # stored, not deflated: compressed bytes would depend on the zlib of the node that built it
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert archive.read("tracker.js") == TRACKER_JS.read_bytes()
        assert archive.read("rules.js") == (EXTENSION.parent / "src" / "rules.js").read_bytes()  # discovery's
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["host_permissions"] == ["https://crm.example.com/*"]
    assert manifest["manifest_version"] == 3 and "content_scripts" not in manifest  # registered for the config only
    assert "web_accessible_resources" not in manifest  # nothing of it can be loaded or probed by a web page
    assert set(manifest["permissions"]) == {"storage", "scripting", "alarms"}


def test_the_trackers_build_makes_the_extension_too() -> None:
    package = json.loads((EXTENSION.parent / "package.json").read_text())
    assert package["scripts"]["build"] == "node build.js && node extension/build.js"
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in package["devDependencies"].values())  # pinned exactly
    lock = json.loads((EXTENSION.parent / "package-lock.json").read_text())
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"]


def test_a_wider_origin_is_refused_by_the_build(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        build_extension(tmp_path, "https://*.example.com")


def test_no_extension_script_evaluates_code() -> None:
    for path in sorted((EXTENSION / "src").glob("*.js")):
        text = path.read_text()
        for forbidden in ("eval(", "new Function", "innerHTML", "document.cookie", ".value"):
            if forbidden == ".value" and path.name == "options.js":
                continue  # the options page reads its own textarea (the pasted link)
            assert forbidden not in text, f"{path.name} contains {forbidden!r}"


# -- the managed storage schema and the policy people copy ------------------------------------------


SCHEMA = json.loads((EXTENSION / "src" / "schema.json").read_text())


@pytest.mark.parametrize("identity", [{"element": "#user", "attribute": "data-id"}, {"variable": "window.crm.user.id"},
                                      {"signin": "https://stepwatch.example"}])
def test_what_the_extension_page_writes_is_what_the_policy_schema_describes(identity: dict[str, str]) -> None:
    site = sites.Site("crm", "pk_abc", "secret", "salt", ("https://crm.example.com",), True, True, 1)
    process = processes.Process("crm", "sales", "Sales", (processes.Step("offer", "Offer", ("/offer",)),))
    config = extension_config("https://stepwatch.example", site, identity, process)
    assert set(config) == set(SCHEMA["properties"])  # the schema names every field, and no other
    assert set(SCHEMA["properties"]["identity"]["properties"]) == {"element", "attribute", "variable", "signin"}
    jsonschema.validate(config, SCHEMA)
    assert js("C.check(args[0])", config) == {"config": config, "problems": []}


def test_the_docs_policy_example_can_be_copied_as_it_is() -> None:
    text = (REPO / "docs" / "extension.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    policy = next(b for b in blocks if "3rdparty" in b)
    assert policy["ExtensionInstallForcelist"][0].startswith(extension_id() + ";https://")
    config = policy["3rdparty"]["extensions"][extension_id()]
    jsonschema.validate(config, SCHEMA)
    assert js("C.check(args[0]).problems", config) == []
    example = next(b for b in blocks if "3rdparty" not in b)  # the configuration's own example
    assert set(example) == set(SCHEMA["properties"]) and js("C.check(args[0]).problems", example) == []


def test_every_word_of_the_extension_is_in_english_and_russian() -> None:
    catalogs = {lang: json.loads((EXTENSION / "src" / "_locales" / lang / "messages.json").read_text())
                for lang in ("en", "ru")}
    assert catalogs["en"].keys() == catalogs["ru"].keys()
    for key, message in catalogs["en"].items():
        placeholders = sorted(re.findall(r"\$\d", message["message"]))
        assert sorted(re.findall(r"\$\d", catalogs["ru"][key]["message"])) == placeholders, key
