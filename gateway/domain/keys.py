"""API keys: creation (the full key is shown once), validation of their limits, and the frozen
`KeyInfo` snapshot the relay checks on every request without touching the database."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from gateway.domain.crypto import hash_secret, new_api_key, visible_prefix
from gateway.domain.models import ApiKey, User, db
from gateway.domain.pricing import micro_to_usd, usd_to_micro
from gateway.neutral import bad_request

LIMIT_FIELDS = (
    "requests_per_minute",
    "requests_per_hour",
    "tokens_per_minute",
    "tokens_per_month",
    "max_concurrent",
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True, frozen=True)
class KeyInfo:
    id: int
    user_id: int
    status: str
    user_status: str
    group: str
    expires_at: float | None  # epoch seconds
    spend_limit_micro_usd: int | None
    spent_micro_usd: int
    month: str
    month_tokens: int
    models: frozenset[str] | None
    networks: tuple[Network, ...] | None
    requests_per_minute: int | None
    requests_per_hour: int | None
    tokens_per_minute: int | None
    tokens_per_month: int | None
    max_concurrent: int | None
    counter_id: str = ""  # names this key's rate counters, unique even across deployments sharing a Redis


def key_info(key: ApiKey, user: User) -> KeyInfo:
    expires = key.expires_at.replace(tzinfo=dt.UTC).timestamp() if key.expires_at else None
    return KeyInfo(
        id=key.id,
        user_id=key.user_id,
        status=key.status,
        user_status=user.status,
        group=user.group,
        expires_at=expires,
        spend_limit_micro_usd=key.spend_limit_micro_usd,
        spent_micro_usd=key.spent_micro_usd,
        month=key.month,
        month_tokens=key.month_tokens,
        models=frozenset(key.models) if key.models else None,
        networks=tuple(ipaddress.ip_network(n, strict=False) for n in key.allowed_ips)
        if key.allowed_ips
        else None,
        requests_per_minute=key.requests_per_minute,
        requests_per_hour=key.requests_per_hour,
        tokens_per_minute=key.tokens_per_minute,
        tokens_per_month=key.tokens_per_month,
        max_concurrent=key.max_concurrent,
        counter_id=key.key_hash[:24],
    )


def load_key_info(key_hash: str) -> KeyInfo | None:
    row = db.session.execute(
        db.select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == key_hash)
    ).first()
    info = None if row is None else key_info(row[0], row[1])
    # end the read transaction now (after reading the rows: a rollback expires them), so the request holds
    # no connection while it waits on anything else
    db.session.rollback()
    return info


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "user_id": key.user_id,
        "name": key.name,
        "prefix": key.prefix,
        "status": key.status,
        "expires_at": key.expires_at.isoformat() + "Z" if key.expires_at else None,
        "spend_limit_usd": micro_to_usd(key.spend_limit_micro_usd),
        "spent_usd": micro_to_usd(key.spent_micro_usd),
        "spent_micro_usd": key.spent_micro_usd,
        "models": key.models,
        "allowed_ips": key.allowed_ips,
        **{name: getattr(key, name) for name in LIMIT_FIELDS},
        "month_tokens": key.month_tokens,
        "last_used_at": key.last_used_at.isoformat() + "Z" if key.last_used_at else None,
        "created_at": key.created_at.isoformat() + "Z",
    }


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC).replace(tzinfo=None)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
            return parsed
    raise bad_request("expires_at must be an ISO 8601 time or a Unix timestamp", "expires_at")


def _string_list(value: Any, param: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{param} must be a list of strings", param)
    return value or None


def _apply(key: ApiKey, fields: dict[str, Any]) -> None:
    if "name" in fields:
        if not isinstance(fields["name"], str) or len(fields["name"]) > 128:
            raise bad_request("name must be a string of at most 128 characters", "name")
        key.name = fields["name"]
    if "status" in fields:
        if fields["status"] not in ("active", "disabled"):
            raise bad_request("status must be active or disabled", "status")
        key.status = fields["status"]
    if "expires_at" in fields:
        key.expires_at = _parse_time(fields["expires_at"])
    if "spend_limit_usd" in fields:
        limit = fields["spend_limit_usd"]
        key.spend_limit_micro_usd = None if limit is None else usd_to_micro(limit, "spend_limit_usd")
        if key.spend_limit_micro_usd is not None and key.spend_limit_micro_usd < 0:
            raise bad_request("spend_limit_usd cannot be negative", "spend_limit_usd")
    if "models" in fields:
        key.models = _string_list(fields["models"], "models")
    if "allowed_ips" in fields:
        networks = _string_list(fields["allowed_ips"], "allowed_ips")
        for network in networks or ():
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise bad_request(f"{network!r} is not an IP address or CIDR range", "allowed_ips") from exc
        key.allowed_ips = networks
    for name in LIMIT_FIELDS:
        if name in fields:
            value = fields[name]
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise bad_request(f"{name} must be a positive integer or null", name)
            setattr(key, name, value)


def create_key(user_id: int, fields: dict[str, Any]) -> tuple[ApiKey, str]:
    plain = new_api_key()
    key = ApiKey(user_id=user_id, key_hash=hash_secret(plain), prefix=visible_prefix(plain), name="")
    _apply(key, fields)
    db.session.add(key)
    db.session.commit()
    return key, plain


def update_key(key: ApiKey, fields: dict[str, Any]) -> ApiKey:
    _apply(key, fields)
    db.session.commit()
    return key
