"""Anthropic `usage` objects and the hub's `Usage`, both ways. `input_tokens` excludes cache reads and cache
writes, which the hub counts in `prompt_tokens`."""

from __future__ import annotations

from typing import Any

from gateway.neutral import Usage


def usage_json(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    out = {
        "input_tokens": max(0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


def usage_from(data: Any) -> Usage | None:
    """An Anthropic `usage` object, normalised: cache reads and writes count as prompt tokens."""
    if not isinstance(data, dict):
        return None
    fields = [
        data.get(f)
        for f in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    ]
    if not isinstance(fields[0], int) and not isinstance(fields[1], int):
        return None
    prompt, completion, read, write = (v if isinstance(v, int) else 0 for v in fields)
    details = data.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt + read + write,
        completion,
        read,
        cache_write_tokens=write,
        reasoning_tokens=thinking if isinstance(thinking, int) else 0,
    )
