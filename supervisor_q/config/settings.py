"""The master-level settings file: `supervisor-q.yaml` in the config dir (a reserved name,
never a program). Validated like program files, each problem one bounded
"<path>: <key>: <problem>" line. Keys today:

    metrics:
      enabled: true            # count job outcomes and flush per-minute buckets to Redis
      bind: 127.0.0.1:9808     # serve Prometheus /metrics there (default: not served)
      retention: 24h           # how long the per-minute buckets stay in Redis

    alerts:                    # master/alerting.py; a program's `alerts:` overrides
      webhooks: [https://hooks.example/T0]   # JSON POST, Slack-compatible `text`
      period: 1h               # one notification per condition per period
      every: 10                # seconds between two checks
      max_size: 1000           # thresholds: see config/schema.AlertRules
      waits: {emails: 60}      # Horizon's waits: per-queue max_wait

A new section is one more field of `MasterSettings` with a model of its own. Imports
config/loading.py, config/messages.py and config/schema.py.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from supervisor_q.config.loading import SETTINGS_FILE, ConfigError, _read_mapping
from supervisor_q.config.messages import translate
from supervisor_q.config.schema import AlertRules, PositiveSeconds, QueueName

DEFAULT_RETENTION = 24 * 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")


def parse_bind(value: str) -> tuple[str, int]:
    """"HOST:PORT" (IPv6 as [::1]:PORT) -> (host, port); ValueError with one clear line."""
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    # a bare name or address: no scheme (http://), path, user or unbracketed IPv6
    odd = any(c in host for c in "/@[] \t") or (":" in host and not bracketed)
    if not sep or not host or odd or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT (e.g. 127.0.0.1:9808), got {value[:60]!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MAX_RETENTION = 30 * 86400  # seconds the per-minute buckets may be kept


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, strict=True)
    bind: str | None = None  # HOST:PORT of /metrics; None: no endpoint
    retention: float = Field(default=DEFAULT_RETENTION, gt=0, le=MAX_RETENTION)

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bind(value)
        return value

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        """Seconds, or a string such as 24h, 90m, 2d; at most MAX_RETENTION, said in the
        units the user wrote."""
        seconds = parse_duration(value)
        if isinstance(seconds, int | float) and seconds > MAX_RETENTION:
            if isinstance(value, str):
                raise ValueError(f"must be at most 30d, got {value.strip()[:40]}")
            raise ValueError(f"must be at most {MAX_RETENTION} seconds (30d), got {value}")
        return seconds


def parse_duration(value: object) -> object:
    """Seconds, or a string such as 24h, 90m, 2d (pydantic `before` validators)."""
    if isinstance(value, str):
        found = _DURATION.match(value.strip())
        if found is None:
            raise ValueError(f"must be seconds or a duration like 24h, got {value[:40]!r}")
        return float(found[1]) * _UNITS[found[2] or "s"]
    if isinstance(value, bool):
        raise ValueError("must be seconds or a duration like 24h, got a boolean")
    return value


class AlertsSettings(AlertRules):
    """The settings file's `alerts:`: where notifications go, how often, and defaults of
    the thresholds for every program (each program's `alerts:` overrides them)."""

    webhooks: tuple[str, ...] = ()  # http(s) URLs, each gets a JSON POST per notification
    period: float = Field(default=3600.0, gt=0)  # one notification per condition per period
    every: PositiveSeconds = 10.0  # seconds between two checks
    waits: dict[QueueName, PositiveSeconds] = {}  # per-queue max_wait (Horizon's `waits`)

    _period = field_validator("period", mode="before")(parse_duration)

    @field_validator("webhooks", mode="before")
    @classmethod
    def _webhooks(cls, value: object) -> object:
        urls = [value] if isinstance(value, str) else value
        for url in urls if isinstance(urls, list | tuple) else ():
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
                raise ValueError(f"must be http:// or https:// URLs, got {str(url)[:60]!r}")
        return urls


class MasterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertsSettings = AlertsSettings()


def settings_path(config_dir: Path) -> Path:
    return config_dir / SETTINGS_FILE


def load_master_settings(config_dir: Path) -> MasterSettings:
    """The settings of config_dir (defaults when the file is absent); ConfigError otherwise."""
    path = settings_path(config_dir)
    if not path.exists() and not path.is_symlink():
        return MasterSettings()
    raw, problems = _read_mapping(path, None)
    if raw is None:
        raise ConfigError(problems)
    try:
        return MasterSettings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError([f"{path}: {key}: {problem}"
                           for key, problem in translate(error, MasterSettings)]) from None
