"""Channels: upstream endpoints with their encrypted keys, models, groups, priority and status.

Status is `enabled`, `disabled` (by an admin) or `auto_disabled` (by the relay, with the reason; the
background probe brings it back). A single upstream key can be set aside on its own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gateway.domain.crypto import Vault
from gateway.domain.models import Channel, ChannelKey, db, utcnow
from gateway.neutral import bad_request

CHANNEL_TYPES = ("openai",)
STATUSES = ("enabled", "disabled", "auto_disabled", "half_open")  # half_open: see gateway.routing


def channel_json(channel: Channel, keys: list[ChannelKey]) -> dict[str, Any]:
    return {
        "id": channel.id,
        "name": channel.name,
        "type": channel.type,
        "base_url": channel.base_url,
        "models": channel.models,
        "model_mapping": channel.model_mapping,
        "groups": channel.groups,
        "priority": channel.priority,
        "weight": channel.weight,
        "status": channel.status,
        "status_reason": channel.status_reason,
        "timeout_s": channel.timeout_s,
        "test_model": channel.test_model,
        "keys": [
            {"id": k.id, "hint": "..." + k.hint, "status": k.status, "status_reason": k.status_reason}
            for k in keys
        ],
        "total_requests": channel.total_requests,
        "total_failures": channel.total_failures,
        "last_latency_ms": channel.last_latency_ms,
        "last_error": channel.last_error,
        "created_at": channel.created_at.isoformat() + "Z",
    }


def channel_keys(channel_id: int) -> list[ChannelKey]:
    return list(
        db.session.scalars(
            db.select(ChannelKey).where(ChannelKey.channel_id == channel_id).order_by(ChannelKey.id)
        )
    )


def _strings(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise bad_request(f"{param} must be a list of non-empty strings", param)
    return [v.strip() for v in value]


def _int(value: Any, param: str, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise bad_request(f"{param} must be an integer of at least {low}", param)
    return value


def _apply(channel: Channel, fields: dict[str, Any], vault: Vault) -> None:
    if "name" in fields:
        if not isinstance(fields["name"], str) or not fields["name"].strip():
            raise bad_request("name is required", "name")
        channel.name = fields["name"].strip()
    if "type" in fields:
        if fields["type"] not in CHANNEL_TYPES:
            raise bad_request(f"type must be one of {', '.join(CHANNEL_TYPES)}", "type")
        channel.type = fields["type"]
    if "base_url" in fields:
        url = fields["base_url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("base_url must be an http(s) URL such as https://api.openai.com/v1", "base_url")
        channel.base_url = url.rstrip("/")
    if "models" in fields:
        channel.models = _strings(fields["models"], "models")
    if "model_mapping" in fields:
        mapping = fields["model_mapping"] or {}
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in mapping.items()
        ):
            raise bad_request("model_mapping must map public model names to upstream names", "model_mapping")
        channel.model_mapping = mapping
    if "groups" in fields:
        channel.groups = _strings(fields["groups"], "groups") or ["default"]
    if "priority" in fields:
        channel.priority = _int(fields["priority"], "priority", -(10**9))
    if "weight" in fields:
        channel.weight = _int(fields["weight"], "weight", 1)
    if "status" in fields:
        if fields["status"] not in ("enabled", "disabled"):
            raise bad_request("status must be enabled or disabled", "status")
        channel.status = fields["status"]
        channel.status_reason = "" if fields["status"] == "enabled" else "disabled by an admin"
    if "timeout_s" in fields:
        timeout = fields["timeout_s"]
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
        ):
            raise bad_request("timeout_s must be a positive number of seconds", "timeout_s")
        channel.timeout_s = timeout
    if "test_model" in fields:
        if not isinstance(fields["test_model"], str):
            raise bad_request("test_model must be a string", "test_model")
        channel.test_model = fields["test_model"]
    if "keys" in fields:
        keys = _strings(fields["keys"], "keys")
        if not keys:
            raise bad_request("keys must hold at least one upstream key", "keys")
        if channel.id is not None:
            db.session.execute(db.delete(ChannelKey).where(ChannelKey.channel_id == channel.id))
        channel.pending_keys = [  # type: ignore[attr-defined]
            ChannelKey(key_encrypted=vault.encrypt(k), hint=k[-4:]) for k in keys
        ]


def _store_keys(channel: Channel) -> None:
    for key in getattr(channel, "pending_keys", ()):
        key.channel_id = channel.id
        db.session.add(key)


def create_channel(fields: dict[str, Any], vault: Vault) -> Channel:
    for required in ("name", "base_url", "keys", "models"):
        if required not in fields:
            raise bad_request(f"{required} is required", required)
    channel = Channel(type="openai", groups=["default"], model_mapping={}, priority=0, weight=1)
    _apply(channel, fields, vault)
    db.session.add(channel)
    db.session.flush()
    _store_keys(channel)
    db.session.commit()
    return channel


def update_channel(channel: Channel, fields: dict[str, Any], vault: Vault) -> Channel:
    _apply(channel, fields, vault)
    _store_keys(channel)
    db.session.commit()
    return channel


def delete_channel(channel: Channel) -> None:
    db.session.execute(db.delete(ChannelKey).where(ChannelKey.channel_id == channel.id))
    db.session.delete(channel)
    db.session.commit()


def set_status(channel_id: int, status: str, reason: str) -> None:
    assert status in STATUSES
    channel = db.session.get(Channel, channel_id)
    if channel is not None:
        channel.status = status
        channel.status_reason = reason
        db.session.commit()


def set_key_status(key_id: int, status: str, reason: str) -> None:
    key = db.session.get(ChannelKey, key_id)
    if key is not None:
        key.status = status
        key.status_reason = reason
        key.set_aside_at = utcnow() if status == "set_aside" else None
        db.session.commit()
