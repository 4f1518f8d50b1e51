"""Settings: one frozen object built from the environment in `create_app`, then passed down.

Every knob the README's configuration table lists is read here and nowhere else.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(slots=True, frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 3000
    instance_dir: str = str(PROJECT_ROOT / "instance")
    database_url: str = ""
    redis_url: str = ""
    secret_key: str = ""
    admin_token: str = ""
    admin_password: str = ""
    retry_attempts: int = 3
    flush_interval_s: float = 1.0
    max_body_mb: int = 32
    auto_disable_after: int = 10
    probe_interval_s: float = 60.0
    default_timeout_s: float = 300.0
    allow_free_models: bool = False
    default_output_reserve_tokens: int = 1024
    testing: bool = False
    # channel health: a channel is disabled when, within `health_window_s`, at least
    # `auto_disable_after` requests failed and they were at least `auto_disable_rate` of its requests
    auto_disable_rate: float = 0.5
    health_window_s: float = 60.0
    # the HTTP layer: slow or idle clients are dropped, and connections beyond the cap refused
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    max_connections: int = 10000
    access_log: str = "text"  # off, text or json
    # sign-in: access tokens expire; X-Forwarded-Proto is believed only from these proxies
    token_ttl_days: float = 30.0
    responses_retention_days: float = 30.0  # stored Responses API answers; 0 keeps them forever
    trusted_proxies: tuple[str, ...] = ()
    # several processes: the Fernet key of upstream keys may come from the environment
    channel_key: str = ""
    workers: int = 1

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_mb * 1024 * 1024

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        return replace(self, **overrides)


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    value = value.strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def normalize_database_url(url: str) -> str:
    """`postgres://` and `postgresql://` (as hosting providers hand them out) mean psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    """Read the environment; unset variables keep the defaults above."""
    env = dict(os.environ if env is None else env)
    instance_dir = env.get("INSTANCE_DIR") or str(PROJECT_ROOT / "instance")
    database_url = normalize_database_url(
        env.get("DATABASE_URL") or f"sqlite:///{Path(instance_dir) / 'relayhouse.db'}"
    )
    return Settings(
        host=env.get("HOST", "0.0.0.0"),
        port=int(env.get("PORT", "3000")),
        instance_dir=instance_dir,
        database_url=database_url,
        redis_url=env.get("REDIS_URL", ""),
        secret_key=env.get("SECRET_KEY", ""),
        admin_token=env.get("RELAYHOUSE_ADMIN_TOKEN", ""),
        admin_password=env.get("RELAYHOUSE_ADMIN_PASSWORD", ""),
        retry_attempts=max(1, int(env.get("RETRY_ATTEMPTS", "3"))),
        flush_interval_s=max(0.0, float(env.get("FLUSH_INTERVAL", "1"))),
        max_body_mb=max(1, int(env.get("MAX_BODY_MB", "32"))),
        auto_disable_after=max(1, int(env.get("AUTO_DISABLE_AFTER", "10"))),
        auto_disable_rate=min(1.0, max(0.0, float(env.get("AUTO_DISABLE_RATE", "0.5")))),
        health_window_s=max(1.0, float(env.get("HEALTH_WINDOW", "60"))),
        header_timeout_s=max(0.1, float(env.get("HEADER_TIMEOUT", "10"))),
        body_timeout_s=max(0.1, float(env.get("BODY_TIMEOUT", "30"))),
        keepalive_timeout_s=max(0.1, float(env.get("KEEPALIVE_TIMEOUT", "75"))),
        max_connections=max(1, int(env.get("MAX_CONNECTIONS", "10000"))),
        access_log=_choice(env.get("ACCESS_LOG", "text"), ("off", "text", "json"), "ACCESS_LOG"),
        token_ttl_days=max(0.001, float(env.get("TOKEN_TTL_DAYS", "30"))),
        responses_retention_days=max(0.0, float(env.get("RESPONSES_RETENTION_DAYS", "30"))),
        trusted_proxies=tuple(p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip()),
        channel_key=env.get("CHANNEL_KEY", ""),
        workers=max(1, int(env.get("WORKERS", "1"))),
        probe_interval_s=max(1.0, float(env.get("PROBE_INTERVAL", "60"))),
        default_timeout_s=max(1.0, float(env.get("UPSTREAM_TIMEOUT", "300"))),
        allow_free_models=_env_bool(env.get("ALLOW_FREE_MODELS", "0")),
    )


def instance_secret(instance_dir: str, name: str, make: Any = None) -> str:
    """Read a secret file from `instance/`, creating it (mode 600) on first use."""
    path = Path(instance_dir) / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make() if make else secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
