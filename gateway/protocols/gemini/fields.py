"""Reading Gemini's JSON safely: values of the expected type or an empty one, fields by JSON or proto name,
model ids with or without `models/`, the text of parts, and tool-call arguments as an object."""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@functools.cache
def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)


def _f(obj: Any, name: str) -> Any:
    """A request field by its JSON name or its proto name (`thinkingConfig` or `thinking_config`): Google's
    proto-JSON parser takes both, and google-genai sends some nested fields in snake case."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def model_id(value: Any) -> Any:
    """The model of a Gemini path segment or field: `models/gemini-2.5-flash` and `gemini-2.5-flash` alike."""
    return value.removeprefix("models/") if isinstance(value, str) else value


def _texts(parts: Any) -> list[str]:
    return [p["text"] for p in _list(parts) if isinstance(p, dict) and isinstance(p.get("text"), str)]


def _args(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments (a JSON string in the hub) as Gemini's `args` object; what is not a JSON object
    (a model's broken JSON) becomes an empty one."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
