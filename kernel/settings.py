"""stepwatch's configuration: one frozen, typed object.

It is built from the environment in exactly one place, the CLI entry point
(`Settings.from_env()`); tests construct `Settings(...)` directly. Every field has a
default and a one-line description, and the README's configuration table lists every
field (tests/test_docs.py fails when one is missing).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

ENV_PREFIX = "STEPWATCH_"


class SettingsError(ValueError):
    """An environment variable has a value that does not fit its setting."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(
        Path("./stepwatch-data"),
        description="Directory of the embedded ClickHouse engine, the ingest spool and the server lock file.",
    )
    clickhouse_url: str | None = Field(
        None,
        description="ClickHouse server URL (e.g. http://user:pass@host:8123/stepwatch); unset = embedded engine.",
    )
    database: str = Field(
        "stepwatch",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="ClickHouse database name (a path in STEPWATCH_CLICKHOUSE_URL takes precedence).",
    )
    clickhouse_cluster: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="Cluster (of the servers' remote_servers) whose shards hold the data, each manager's rows on one "
        "shard; unset = one server. Needs CLICKHOUSE_URL and CLICKHOUSE_NODES.",
    )
    clickhouse_nodes: str = Field(
        "",
        description="Comma-separated URLs of every node of CLICKHOUSE_CLUSTER: migrations without Keeper, and deletes, "
        "are applied on each.",
    )
    clickhouse_keeper: bool = Field(
        False,
        description="The cluster has ClickHouse Keeper: tables are ReplicatedMergeTree and migrations run ON CLUSTER.",
    )
    host: str = Field("127.0.0.1", description="Address `stepwatch serve` listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port `stepwatch serve` listens on.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level; logs are JSON lines on stderr."
    )
    # ClickHouse's DateTime, which a TTL is computed in, ends in 2106: a longer retention wraps around
    # and would delete rows as they arrive.
    retention_days: int = Field(
        400, ge=1, le=25_000, description="Days step visits are kept (ClickHouse TTL); older events are refused."
    )
    max_batch_events: int = Field(500, ge=1, le=100_000, description="Most events in one POST /v1/events.")
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest POST /v1/events body in bytes."
    )
    clock_skew_s: int = Field(
        300, ge=0, le=86_400, description="How far in the future an event's timestamp may be, in seconds."
    )
    max_duration_ms: int = Field(
        12 * 3600 * 1000, ge=1, description="Largest active, idle or hidden time one visit may report, in ms."
    )
    rate_limit_site: float = Field(
        2000.0, ge=0, description="Requests per second one site may send (token bucket, burst 2x); 0 = no limit."
    )
    rate_limit_address: float = Field(
        50.0, ge=0, description="Requests per second one client address may send (burst 2x); 0 = no limit."
    )
    trust_forwarded_for: bool = Field(
        False, description="Take the client address from X-Forwarded-For (only behind a trusted proxy)."
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or CIDRs of the reverse proxies whose X-Forwarded-For and SSO "
        "header are believed; empty = the direct peer when TRUST_FORWARDED_FOR is on, no SSO peer otherwise.",
    )
    ack_mode: Literal["wal", "insert"] = Field(
        "wal",
        description="When a batch is acknowledged: wal = once fsynced to the local spool, "
        "insert = once inserted into ClickHouse.",
    )
    flush_ms: float = Field(
        200.0, gt=0, description="wal mode: how often acknowledged events are inserted into ClickHouse, in ms."
    )
    group_commit_rows: int = Field(
        20_000, ge=1, description="Rows that trigger an insert of the pending events at once."
    )
    group_commit_ms: float = Field(
        5.0, ge=0, description="How long the first pending event waits for others to share its insert, in ms."
    )
    spool_dir: Path | None = Field(
        None, description="The spool: acknowledged events not yet in ClickHouse; unset = DATA_DIR/spool."
    )
    spool_max_bytes: int = Field(
        1024**3, ge=1024, description="Largest size of the spool; beyond it ingest answers 503."
    )
    spool_retry_s: float = Field(
        2.0, gt=0, description="Seconds between attempts to drain the spool into ClickHouse."
    )
    webhook_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="URL that coaching notifications are POSTed to (JSON with a Slack-compatible text field); "
        "unset = no notifications.",
    )

    public_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="Address people open the dashboards at (e.g. https://stepwatch.example.com), for the links "
        "in digests; unset = the links are paths only.",
    )
    smtp_host: str | None = Field(None, description="SMTP server digests are e-mailed through; unset = no e-mail.")
    smtp_port: int = Field(587, ge=1, le=65535, description="Port of the SMTP server.")
    smtp_user: str | None = Field(None, description="SMTP login name; unset = send without logging in.")
    smtp_password: SecretStr | None = Field(
        None, description="SMTP password (secret: never logged nor shown); used with SMTP_USER."
    )
    smtp_from: str = Field(
        "stepwatch@localhost", pattern=r"^[^@\s]+@[^@\s]+$", description="Sender address of the e-mails."
    )
    smtp_starttls: bool = Field(
        True, description="Upgrade the SMTP connection with STARTTLS (certificate checked) before logging in."
    )
    digest_day: Literal["off", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = Field(
        "monday", description="Day `stepwatch serve` sends the weekly digests (UTC); off = only by command."
    )
    digest_hour: int = Field(6, ge=0, le=23, description="Hour (UTC) of DIGEST_DAY from which the digests go out.")

    analysis_window_days: int = Field(14, ge=7, le=366, description="Days of sessions each analysis compares.")
    analysis_metric: Literal["visible", "active", "wall"] = Field(
        "visible", description="Time compared with the bands: visible (active + idle), active, or wall (with hidden)."
    )
    analysis_interval_s: float = Field(
        300.0, ge=0, description="How often `stepwatch serve` runs the analysis, in seconds; 0 = never."
    )
    analysis_min_sessions: int = Field(
        20, ge=1, description="Sessions of a step in the window below which a manager is `insufficient`."
    )
    analysis_fdr: float = Field(0.05, gt=0, lt=1, description="False-discovery rate of the peer comparison (BH).")
    analysis_material: float = Field(
        0.10, ge=0, lt=1, description="How far above the reference a median must be to flag slowness (0.10 = 10%)."
    )
    analysis_persistent_periods: int = Field(
        3, ge=0, le=4, description="Weekly periods out of the last 4 in drawdown for a flag to be persistent."
    )
    analysis_systemic_share: float = Field(
        0.40, gt=0, le=1, description="Share of a team slow on a step that makes one step-level (systemic) flag."
    )

    secret_key: str | None = Field(
        None,
        min_length=16,
        description="Key that signs login cookies; unset = a random key kept in DATA_DIR/secret_key. "
        "Give every instance behind a load balancer the same key.",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="How long a login lasts, in hours.")
    login_attempts_account: int = Field(
        5, ge=1, description="Failed logins per account in 15 minutes before further attempts wait."
    )
    login_attempts_address: int = Field(
        20, ge=1, description="Failed logins per client address in 15 minutes before further attempts wait."
    )
    login_workers: int = Field(
        2, ge=1, le=64, description="Threads that check login passwords (Argon2id), apart from the storage pool."
    )
    login_queue: int = Field(
        16, ge=0, le=10_000, description="Logins that may wait for a password check; beyond it a login gets 429."
    )
    peer_group_min: int = Field(
        5, ge=2, le=1000, description="Fewest peers an anonymous aggregate shown to a manager must cover."
    )
    hsts_seconds: int = Field(
        31_536_000, ge=0, description="Strict-Transport-Security max-age sent over https, in seconds; 0 = none."
    )
    sso_header: str | None = Field(
        None,
        description="Header with the user name set by a trusted reverse proxy (single sign-on); unset = off. "
        "Believed only from TRUSTED_PROXIES.",
    )

    @model_validator(mode="after")
    def _cluster_complete(self) -> Settings:
        if self.clickhouse_cluster and not (self.clickhouse_url and self.node_urls):
            raise ValueError("STEPWATCH_CLICKHOUSE_CLUSTER needs STEPWATCH_CLICKHOUSE_URL (the node it talks to) "
                             "and STEPWATCH_CLICKHOUSE_NODES (every node of the cluster)")
        return self

    @property
    def node_urls(self) -> tuple[str, ...]:
        return tuple(url.strip() for url in self.clickhouse_nodes.split(",") if url.strip())

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not an IP address or CIDR") from None
        return value

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """STEPWATCH_TRUSTED_PROXIES as networks (a bare address is a /32 or /128)."""
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in self.trusted_proxies.split(",")
                     if p.strip())

    @property
    def spool_path(self) -> Path:
        return self.spool_dir if self.spool_dir is not None else self.data_dir / "spool"

    @property
    def embedded(self) -> bool:
        return not self.clickhouse_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every `STEPWATCH_<FIELD>` variable that is set; the rest keep their defaults."""
        environ = os.environ if environ is None else environ
        values = {
            name: environ[env_name(name)]
            for name in cls.model_fields
            if environ.get(env_name(name), "") != ""
        }
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{env_name(str(err['loc'][0]))}: {err['msg']}" if err["loc"] else err["msg"]
                for err in exc.errors()
            )
            raise SettingsError(problems) from None


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()
