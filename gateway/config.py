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
    auto_disable_after: int = 5
    probe_interval_s: float = 60.0
    default_timeout_s: float = 300.0
    allow_free_models: bool = False
    default_output_reserve_tokens: int = 1024
    testing: bool = False

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_mb * 1024 * 1024

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        return replace(self, **overrides)


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    """Read the environment; unset variables keep the defaults above."""
    env = dict(os.environ if env is None else env)
    instance_dir = env.get("INSTANCE_DIR") or str(PROJECT_ROOT / "instance")
    database_url = env.get("DATABASE_URL") or f"sqlite:///{Path(instance_dir) / 'relayhouse.db'}"
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
        auto_disable_after=max(1, int(env.get("AUTO_DISABLE_AFTER", "5"))),
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
