"""What cannot run here, checked as far as it can be: the replicated (Keeper) variant of every
migration parses in ClickHouse, and the compose files are valid and name what docs/deploy.md says."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from kernel import cluster, migrations, storage

REPO = Path(__file__).resolve().parent.parent
CLUSTER_DIR = REPO / "deploy" / "cluster"


def statements(layout: cluster.Layout) -> list[str]:
    found = migrations.discover()
    tables = {t for m in found for t in migrations.created_tables(m)} | {"schema_migrations"}
    sql = [s.sql for s in layout.rewrite(migrations._LEDGER.strip(), set())]
    for migration in found:
        for statement in migration.statements():
            sql += [s.sql for s in layout.rewrite(statement, tables)]
    return sql


@pytest.mark.parametrize("keeper", [True, False], ids=["keeper", "no-keeper"])
def test_every_statement_of_the_cluster_variant_parses(client: storage.Client, keeper: bool) -> None:
    layout = cluster.Layout("stepwatch", "stepwatch", keeper=keeper)
    sql = statements(layout)
    assert len(sql) > 80
    for statement in sql:
        formatted = client.command("SELECT formatQuery({q:String})", parameters={"q": statement})
        assert formatted, statement
    if keeper:
        creates = [s for s in sql if s.startswith("CREATE TABLE") and "_local ON CLUSTER" in s]
        assert creates and all("ENGINE = Replicated" in s for s in creates)
        assert all(" ON CLUSTER stepwatch" in s for s in sql if not s.startswith("INSERT"))


def compose(path: Path) -> dict:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict) and isinstance(loaded.get("services"), dict), path
    for name, service in loaded["services"].items():
        depends = service.get("depends_on", [])
        assert set(depends) <= set(loaded["services"]), f"{path}: {name} depends on an unknown service"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).is_file(), f"{path}: {name} mounts a missing {source}"
            else:
                assert source in (loaded.get("volumes") or {}), f"{path}: {name}: undeclared volume {source}"
    return loaded


def test_the_one_server_compose_file() -> None:
    services = compose(REPO / "docker-compose.yml")["services"]
    assert {"clickhouse", "stepwatch"} <= set(services)
    assert "@clickhouse:8123/" in services["stepwatch"]["environment"]["STEPWATCH_CLICKHOUSE_URL"]


def test_the_cluster_compose_file_is_two_shards_of_two_replicas_with_keeper() -> None:
    services = compose(CLUSTER_DIR / "docker-compose.yml")["services"]
    nodes = ["ch-s1r1", "ch-s1r2", "ch-s2r1", "ch-s2r2"]
    collectors = ["collector-analysis", "collector-1", "collector-2"]
    assert set(nodes + collectors + ["keeper-1", "keeper-2", "keeper-3", "balancer"]) <= set(services)
    config = ET.parse(CLUSTER_DIR / "clickhouse" / "cluster.xml").getroot()
    shards = config.findall("./remote_servers/stepwatch/shard")
    assert [[r.findtext("host") for r in s.findall("replica")] for s in shards] == [nodes[:2], nodes[2:]]
    assert all(s.findtext("internal_replication") == "true" for s in shards)
    assert [n.findtext("host") for n in config.findall("./zookeeper/node")] == ["keeper-1", "keeper-2", "keeper-3"]
    for node in nodes:  # each node its own shard and replica macros
        macros = next(v for v in services[node]["volumes"] if "macros" in v).split(":")[0]
        root = ET.parse(CLUSTER_DIR / macros).getroot()
        assert (root.findtext("./macros/shard"), root.findtext("./macros/replica")) == (node[4], node)
    for n in (1, 2, 3):
        keeper = ET.parse(CLUSTER_DIR / "keeper" / f"keeper-{n}.xml").getroot()
        assert keeper.findtext("./keeper_server/server_id") == str(n)
    analysing = []
    for name in collectors:
        env = services[name]["environment"]
        assert env["STEPWATCH_CLICKHOUSE_CLUSTER"] == "stepwatch" and env["STEPWATCH_CLICKHOUSE_KEEPER"] == "true"
        assert [u.split("@")[1].split(":")[0] for u in env["STEPWATCH_CLICKHOUSE_NODES"].split(",")] == nodes
        if float(env["STEPWATCH_ANALYSIS_INTERVAL_S"]) > 0:
            analysing.append(name)
        assert any(v.endswith(":/var/lib/stepwatch") for v in services[name]["volumes"])  # its own spool
    assert analysing == ["collector-analysis"]
    assert len({v.split(":")[0] for name in collectors for v in services[name]["volumes"]}) == len(collectors)
