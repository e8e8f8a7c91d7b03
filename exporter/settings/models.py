"""The frozen pydantic settings models, the Invocation, and the listen-address syntax."""

from __future__ import annotations

import itertools
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter.domain.names import DEFAULT_WAITING_STATES
from exporter.settings import regions
from exporter.settings.files import client_ssl_context
from exporter.settings.regions import Region
from exporter.settings.servicelevels import CalendarSettings, ServiceLevelRuleSettings
from exporter.settings.values import host_ordinal, shown
from exporter.settings.web_config import WebConfig

Mode = Literal["run", "demo", "once", "check_config", "check_connection", "version"]
_ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# More replicas than this is a mistake (a pasted number), not a deployment.
MAX_TOTAL_SHARDS = 1000


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; use the credential settings")
    return value


def split_listen_address(address: str) -> tuple[str, int]:
    """Split ``host:port``, ``:port`` or ``[v6]:port``; an empty host means all interfaces."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 host must be in brackets, like [::1]:9654")
    if not sep or any(c.isspace() or c in "[]" for c in host):
        raise ValueError("must be host:port, :port or [ipv6]:port")
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError("port must be a number from 0 to 65535")
    return host, int(port)


class TargetSettings(BaseModel):
    """One organisation to poll."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    org_id: str
    api_key: SecretStr
    client_id: str | None = None
    client_secret: SecretStr | None = None
    access_token: SecretStr | None = None
    region: Region = "us"
    token_url: str = ""  # "" is replaced by the region's token URL
    token_realm: str | None = None  # None is replaced by org_id; "" sends no realm
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"  # noqa: S105 - a method name, not a password
    scope: str = Field("emailqueueapi", min_length=1)
    api_url: str = ""  # "" is replaced by https://{org_id}.<the region's API domain>
    extended_info: bool = True
    email_type: str | None = None
    work_type_ids: tuple[str, ...] = ()
    states: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            region = str(data.get("region", "us"))
            org_id = data.get("org_id")
            known = region in regions.REGIONS  # else only the region is reported, not its URLs
            if not data.get("token_url") and known:
                data["token_url"] = regions.token_url(region)
            if not data.get("api_url") and isinstance(org_id, str) and known:
                data["api_url"] = regions.api_url(region, org_id)
            if data.get("token_realm") is None and isinstance(org_id, str):
                data["token_realm"] = org_id
        return data

    @field_validator("org_id")
    @classmethod
    def _org_id(cls, value: str) -> str:
        if not _ORG_ID.fullmatch(value):
            raise ValueError(
                "must be 1-128 letters, digits, '.', '_' or '-', not starting with . _ -"
            )
        return value

    @field_validator("api_key", "client_secret", "access_token")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _check_url(value).rstrip("/")

    @field_validator("work_type_ids", "states")
    @classmethod
    def _filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item for item in value):
            raise ValueError("items must not be empty")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> TargetSettings:
        if self.access_token is None and (self.client_id is None or self.client_secret is None):
            raise ValueError("set client_id and client_secret, or access_token")
        return self


def denied_by(denylist: tuple[str, ...], family: str) -> bool:
    """Whether any pattern of a `metric_denylist` matches the family exposed as `family`."""
    return any(re.search(pattern, family) for pattern in denylist)


class Settings(BaseModel):
    """Everything the exporter runs with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: tuple[TargetSettings, ...] = ()
    listen_address: str = ":9654"
    poll_interval: float = Field(30.0, gt=0)
    page_size: int = Field(500, ge=1, le=10000)
    max_concurrency: int = Field(4, ge=1)
    request_timeout: float = Field(10.0, gt=0)
    max_retries: int = Field(3, ge=0)
    stale_after: float = 0.0  # 0 is replaced by 5 * poll_interval
    series_ttl: float = Field(3600.0, ge=0)
    waiting_states: tuple[str, ...] = DEFAULT_WAITING_STATES
    age_buckets: tuple[float, ...] = tuple(
        float(b) for b in (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
    )
    max_work_types: int = Field(500, ge=1)
    agent_metrics: bool = False
    max_agents: int = Field(2000, ge=1)
    # Handling KPIs (SPEC §10): repeat contacts remember departed threads this long, this many.
    thread_memory: float = Field(7 * 86400.0, gt=0)
    max_threads: int = Field(100_000, ge=0)
    work_type_label: Literal["name", "id"] = "name"
    # Family names (as exposed: counters with _total) matched anywhere, as kube-state-metrics does.
    metric_denylist: tuple[str, ...] = ()
    # The exporter's own series and a catch-all pair must fit (see exporter.aggregation.series_budget).
    max_series: int = Field(20_000, ge=1000)
    max_label_length: int = Field(128, ge=16, le=4096)
    max_pages: int = Field(1000, ge=1)
    # max_concurrency bodies of this size may be in memory at once (docs/operations.md: memory).
    max_response_bytes: int = Field(32 * 1024 * 1024, ge=1)
    ca_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"
    config_file: Path | None = None
    web_config_file: Path | None = None
    # POST /-/reload, as Prometheus' --web.enable-lifecycle: off unless asked for.
    web_enable_lifecycle: bool = False
    max_connections: int = Field(512, ge=1, le=1_000_000)
    header_timeout: float = Field(10.0, gt=0, le=3600)
    strict_env: bool = False
    service_level_target: float = Field(86400.0, gt=0)
    service_level_warning: float = Field(3600.0, ge=0)
    service_levels: tuple[ServiceLevelRuleSettings, ...] = ()  # YAML only
    calendars: dict[str, CalendarSettings] = Field(default_factory=dict)  # YAML only
    shard: int = Field(0, ge=0)
    # Validated even when defaulted, so a shard without total_shards is caught.
    total_shards: int = Field(1, ge=1, le=MAX_TOTAL_SHARDS, validate_default=True)
    max_requests_per_second: float | None = Field(None, gt=0, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("stale_after"):
            poll = data.get("poll_interval", 30.0)
            if isinstance(poll, int | float):
                data = {**data, "stale_after": 5 * poll}
        return data

    @field_validator("listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        split_listen_address(value)
        return value

    @field_validator("shard", mode="before")
    @classmethod
    def _shard(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            # The pod name in Kubernetes (the kubelet sets HOSTNAME to it), else the host name.
            return host_ordinal(os.environ.get("HOSTNAME") or socket.gethostname())
        return value

    @field_validator("total_shards")
    @classmethod
    def _total_shards(cls, value: int, info: ValidationInfo) -> int:
        shard = info.data.get("shard")
        if isinstance(shard, int) and shard >= value:
            raise ValueError(f"must be greater than shard ({shard}): shards are numbered from 0")
        return value

    @field_validator("waiting_states")
    @classmethod
    def _waiting_states(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not item for item in value):
            raise ValueError("must list at least one state, with no empty items")
        return value

    @field_validator("age_buckets")
    @classmethod
    def _age_buckets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or value[0] <= 0 or not all(math.isfinite(v) for v in value):
            raise ValueError("must be a non-empty list of finite positive seconds")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("must be strictly increasing")
        return value

    @field_validator("metric_denylist")
    @classmethod
    def _metric_denylist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{shown(pattern)} is not a regular expression: {exc}") from None
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None:
            client_ssl_context(value)  # loaded now, so a bad bundle fails --check-config too
        return value

    @model_validator(mode="after")
    def _stale_after(self) -> Settings:
        if self.stale_after < self.poll_interval:
            raise ValueError("stale_after must be at least poll_interval")
        return self

    def denies(self, family: str) -> bool:
        """Whether `metric_denylist` removes the metric family exposed as `family`."""
        return denied_by(self.metric_denylist, family)

    @property
    def listen_host(self) -> str:
        """Host part of listen_address; "" means all interfaces."""
        return split_listen_address(self.listen_address)[0]

    @property
    def listen_port(self) -> int:
        """Port part of listen_address."""
        return split_listen_address(self.listen_address)[1]


@dataclass(frozen=True)
class Invocation:
    """What to do, and with which settings."""

    mode: Mode
    settings: Settings
    # Valid but surprising layering, e.g. a secret file shadowed by a value from the YAML file.
    notes: tuple[str, ...] = ()
    # The web config file as read (once) while the settings were validated.
    web: WebConfig = field(default_factory=WebConfig)
    # With --show-sources: where each value came from (setting, or targets[0].org_id, -> source).
    sources: Mapping[str, str] | None = None
