"""API keys: creation (the full key is shown once), validation of their limits, who may manage a key and
its deletion, and the frozen `KeyInfo` snapshot the relay checks on every request without touching the
database."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.domain import accounts, bounds
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
NAME_MAX = bounds.column_length(ApiKey.name)
MODEL_MAX = 128  # as a price's model name
NETWORK_MAX = 64  # the longest IPv6 CIDR is 43 characters
FIELDS = (
    "name",
    "status",
    "expires_at",
    "spend_limit_usd",
    "models",
    "allowed_ips",
    *LIMIT_FIELDS,
)
# the timestamps a key may expire at: DateTime columns and datetime.fromtimestamp agree on these
EXPIRES_MIN = dt.datetime(1970, 1, 1)
EXPIRES_MAX = dt.datetime(9999, 12, 31)


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
    parsed = None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            parsed = dt.datetime.fromtimestamp(value, dt.UTC).replace(tzinfo=None)
        elif isinstance(value, str) and len(value) <= 64:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        parsed = None  # not a time, or beyond the years a datetime holds (1e20 seconds, NaN)
    if parsed is None or not EXPIRES_MIN <= parsed <= EXPIRES_MAX:
        raise bad_request(
            "expires_at must be an ISO 8601 time or a Unix timestamp, from 1970 to 9999", "expires_at"
        )
    return parsed


def _string_list(value: Any, param: str, max_length: int) -> list[str] | None:
    if value is None:
        return None
    return bounds.texts(value, param, max_length) or None


def _apply(key: ApiKey, fields: dict[str, Any]) -> None:
    bounds.only(fields, FIELDS, "key")
    if "name" in fields:
        key.name = bounds.text(fields["name"], "name", NAME_MAX)
    if "status" in fields:
        if fields["status"] not in ("active", "disabled"):
            raise bad_request("status must be active or disabled", "status")
        key.status = fields["status"]
    if "expires_at" in fields:
        key.expires_at = _parse_time(fields["expires_at"])
    if "spend_limit_usd" in fields:
        limit = fields["spend_limit_usd"]
        key.spend_limit_micro_usd = (
            None if limit is None else usd_to_micro(limit, "spend_limit_usd", low=Decimal(0))
        )
    if "models" in fields:
        key.models = _string_list(fields["models"], "models", MODEL_MAX)
    if "allowed_ips" in fields:
        networks = _string_list(fields["allowed_ips"], "allowed_ips", NETWORK_MAX)
        for network in networks or ():
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise bad_request(f"{network!r} is not an IP address or CIDR range", "allowed_ips") from exc
        key.allowed_ips = networks
    for name in LIMIT_FIELDS:
        if name in fields:
            value = fields[name]
            if value is not None:
                value = bounds.integer(value, name, 1, bounds.integer_range(getattr(ApiKey, name))[1])
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


def manageable_key(user: User, key_id: int, own_only: bool = False) -> ApiKey | None:
    """The key `key_id` if `user` may manage it: their own, or any user's for an admin, unless `own_only`
    (the console's keys page shows admins their own keys only). None for anyone else's key, for no such
    key, and for an id past the INTEGER column, which names nothing."""
    key = db.session.get(ApiKey, key_id) if 0 < key_id <= bounds.INT32[1] else None
    if key is None or (key.user_id != user.id and (own_only or not accounts.is_admin(user))):
        return None
    return key


def delete_key(user: User, key_id: int, own_only: bool = False) -> bool:
    """Delete the key `key_id` if `user` may manage it (`manageable_key`); False when they may not or it
    does not exist. The caller tells the relay (`changed_keys`), which stops taking it at once."""
    key = manageable_key(user, key_id, own_only)
    if key is None:
        return False
    db.session.delete(key)
    db.session.commit()
    return True
