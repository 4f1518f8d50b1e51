"""Channels: upstream endpoints with their encrypted keys, models, groups, priority and status.

Status is `enabled`, `disabled` (by an admin) or `auto_disabled` (by the relay, with the reason; the
background probe brings it back). A single upstream key can be set aside on its own.

A status reason is stored as a code with its parameters (`reason`), so the console can say it in the
reader's language; the API gives it in English (`reason_text`). Reasons stored as free text before codes
existed are shown as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.domain import bounds
from gateway.domain.crypto import Vault
from gateway.domain.models import Channel, ChannelKey, Group, db, utcnow
from gateway.neutral import bad_request


@dataclass(frozen=True, slots=True)
class ChannelType:
    name: str
    protocol: str  # the protocol module its upstream speaks
    base_url: str  # the default, as its SDK takes it; "" when every channel must give its own
    responses: bool = False  # serves /v1/responses natively unless the channel's settings say otherwise
    label: str = ""


CHANNEL_TYPES: dict[str, ChannelType] = {
    t.name: t
    for t in (
        ChannelType("openai", "openai", "https://api.openai.com/v1", True, "OpenAI"),
        ChannelType("azure", "openai", "", False, "Azure OpenAI"),
        ChannelType("anthropic", "anthropic", "https://api.anthropic.com", False, "Anthropic"),
        ChannelType("gemini", "gemini", "https://generativelanguage.googleapis.com", False, "Google Gemini"),
        ChannelType("deepseek", "openai", "https://api.deepseek.com/v1", False, "DeepSeek"),
        ChannelType("mistral", "openai", "https://api.mistral.ai/v1", False, "Mistral"),
        ChannelType("groq", "openai", "https://api.groq.com/openai/v1", False, "Groq"),
        ChannelType("xai", "openai", "https://api.x.ai/v1", False, "xAI"),
        ChannelType("openrouter", "openai", "https://openrouter.ai/api/v1", False, "OpenRouter"),
        ChannelType("moonshot", "openai", "https://api.moonshot.ai/v1", False, "Moonshot"),
        ChannelType("siliconflow", "openai", "https://api.siliconflow.cn/v1", False, "SiliconFlow"),
        ChannelType("together", "openai", "https://api.together.xyz/v1", False, "Together AI"),
        ChannelType("ollama", "openai", "http://127.0.0.1:11434/v1", False, "Ollama"),
        ChannelType("vllm", "openai", "http://127.0.0.1:8000/v1", False, "vLLM"),
        ChannelType("lmstudio", "openai", "http://127.0.0.1:1234/v1", False, "LM Studio"),
    )
}
# per-type options: a tuple lists the allowed values, `str` takes a short text, `int` a positive integer
SETTINGS: dict[str, tuple[str, ...] | type] = {
    "responses": ("native", "convert"),  # how /v1/responses reaches an OpenAI-compatible upstream
    "api_version": str,  # azure's api-version
    "max_output_tokens": int,  # the most output a converted request may ask of this upstream
}
STATUSES = ("enabled", "disabled", "auto_disabled", "half_open")  # half_open: see gateway.routing
FIELDS = (
    "name",
    "type",
    "base_url",
    "keys",
    "models",
    "model_mapping",
    "groups",
    "priority",
    "weight",
    "status",
    "timeout_s",
    "test_model",
    "settings",
)
NAME_MAX = bounds.column_length(Channel.name)
BASE_URL_MAX = bounds.column_length(Channel.base_url)
MODEL_MAX = bounds.column_length(Channel.test_model)  # every model name: a price's is as long
GROUP_MAX = bounds.column_length(Group.name)
KEY_MAX = bounds.TEXT_MAX
TIMEOUT_MAX_S = 24 * 3600.0


# a reason's code: its English text, the API's `status_reason`. `status` and `code` are the upstream's HTTP
# status and error code; `last` the message of the last failure (the upstream's own words when it answered).
REASONS: dict[str, str] = {
    "admin_disabled": "disabled by an admin",
    "key_rejected": "upstream answered {status} ({code})",
    "keys_set_aside": "every key set aside; last: upstream answered {status} ({code})",
    "failed_on_trial": "failed again while half-open: {last}",
    "failure_rate": "{failures} of {requests} requests failed in {window_s} s; last: {last}",
    "answered_test": "answered a test; taking a little traffic",
}


def reason(kind: str, /, **params: str | int | None) -> str:
    """A status reason as `status_reason` stores it: JSON with its code (`reason`) and its parameters."""
    assert kind in REASONS
    return json.dumps({"reason": kind, **params}, ensure_ascii=False, separators=(",", ":"))


def read_reason(stored: str) -> tuple[str | None, dict[str, Any]]:
    """A stored reason's code and parameters; `(None, {})` for free text stored before codes existed."""
    if not stored.startswith("{"):
        return None, {}
    try:
        data = json.loads(stored)
    except ValueError:
        return None, {}
    if not isinstance(data, dict) or data.get("reason") not in REASONS:
        return None, {}
    return data.pop("reason"), data


def reason_text(stored: str) -> str:
    """A stored reason in English, as the API gives it."""
    code, params = read_reason(stored)
    if code is None:
        return stored
    try:
        return REASONS[code].format_map(params)
    except (KeyError, ValueError):  # a parameter missing: the code alone says something
        return code.replace("_", " ")


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
        "status_reason": reason_text(channel.status_reason),
        "timeout_s": channel.timeout_s,
        "test_model": channel.test_model,
        "settings": channel.settings or {},
        "keys": [
            {
                "id": k.id,
                "hint": "..." + k.hint,
                "status": k.status,
                "status_reason": reason_text(k.status_reason),
            }
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


def _origin(url: str) -> tuple[str, str, int | None]:
    """Where a base URL sends its keys: scheme, host and port (the scheme's default when left out)."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # stored before ports were checked
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def _base_url(value: Any) -> str:
    url = bounds.text(value, "base_url", BASE_URL_MAX, 1).strip()
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a port that is not a number, or out of range
        valid = False
    if not valid or not url.isprintable():
        raise bad_request("base_url must be an http(s) URL such as https://api.openai.com/v1", "base_url")
    return url.rstrip("/")


def _mapping(value: Any) -> dict[str, str]:
    mapping = value or {}
    if not isinstance(mapping, dict) or len(mapping) > 1000:
        raise bad_request("model_mapping must map public model names to upstream names", "model_mapping")
    for public, upstream in mapping.items():
        bounds.text(public, "model_mapping", MODEL_MAX, 1)
        bounds.text(upstream, "model_mapping", MODEL_MAX, 1)
    return mapping


def _settings(value: Any) -> dict[str, Any]:
    settings = value or {}
    if not isinstance(settings, dict):
        raise bad_request("settings must be an object", "settings")
    for name, value in settings.items():
        if name not in SETTINGS:
            raise bad_request(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}", "settings")
        allowed = SETTINGS[name]
        if allowed is int:
            bounds.integer(value, "settings", 1, bounds.INT32[1])
            continue
        text = bounds.text(value, "settings", 64, 1)
        if isinstance(allowed, tuple) and text not in allowed:
            raise bad_request(f"settings.{name} must be one of {', '.join(allowed)}", "settings")
    return dict(settings)


def _apply(channel: Channel, fields: dict[str, Any], vault: Vault) -> None:
    bounds.only(fields, FIELDS, "channel")
    if "name" in fields:
        name = bounds.text(fields["name"], "name", NAME_MAX).strip()
        if not name:
            raise bad_request("name is required", "name")
        channel.name = name
    if "type" in fields:
        if fields["type"] not in CHANNEL_TYPES:
            raise bad_request(f"type must be one of {', '.join(CHANNEL_TYPES)}", "type")
        channel.type = fields["type"]
    if "settings" in fields:
        channel.settings = _settings(fields["settings"])
    if "base_url" in fields or channel.id is None:
        url = _base_url(fields.get("base_url") or CHANNEL_TYPES[channel.type].base_url or None)
        if channel.id is not None and _origin(url) != _origin(channel.base_url) and "keys" not in fields:
            # the stored keys belong to the old host: never send them to another one unasked
            raise bad_request(
                "base_url moves the channel to another host: send its keys for that host in the same request",
                "keys",
            )
        channel.base_url = url
    if "models" in fields:
        channel.models = bounds.texts(fields["models"], "models", MODEL_MAX)
    if "model_mapping" in fields:
        channel.model_mapping = _mapping(fields["model_mapping"])
    if "groups" in fields:
        channel.groups = bounds.texts(fields["groups"], "groups", GROUP_MAX) or ["default"]
    if "priority" in fields:
        channel.priority = bounds.integer(fields["priority"], "priority", *bounds.INT32)
    if "weight" in fields:
        channel.weight = bounds.integer(fields["weight"], "weight", 1, bounds.INT32[1])
    if "status" in fields:
        if fields["status"] not in ("enabled", "disabled"):
            raise bad_request("status must be enabled or disabled", "status")
        channel.status = fields["status"]
        channel.status_reason = "" if fields["status"] == "enabled" else reason("admin_disabled")
    if "timeout_s" in fields:
        timeout = fields["timeout_s"]
        if timeout is not None and (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 < timeout <= TIMEOUT_MAX_S  # also refuses NaN
        ):
            raise bad_request(
                f"timeout_s must be a number of seconds, above 0 and at most {TIMEOUT_MAX_S:g}", "timeout_s"
            )
        channel.timeout_s = timeout
    if "test_model" in fields:
        channel.test_model = bounds.text(fields["test_model"], "test_model", MODEL_MAX)
    if "keys" in fields:
        keys = bounds.texts(fields["keys"], "keys", KEY_MAX)
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
    for required in ("name", "keys", "models"):
        if required not in fields:
            raise bad_request(f"{required} is required", required)
    channel = Channel(type="openai", groups=["default"], model_mapping={}, priority=0, weight=1, settings={})
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
