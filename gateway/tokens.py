"""Token counting for estimated usage, with tiktoken-compatible encodings shipped inside the
`bpe-openai` wheel: nothing is downloaded at run time.

Used only when an upstream reports no usage, or a stream is cut before its usage arrives.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import bpe_openai

O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")
TOKENS_PER_MESSAGE = 3  # OpenAI's cookbook figure for chat formatting overhead
TOKENS_PER_REPLY = 3


@cache
def encoding(name: str) -> Any:
    return bpe_openai.get_encoding(name)


def encoding_for(model: str) -> Any:
    base = model.rsplit("/", 1)[-1].lower()
    return encoding("o200k_base" if base.startswith(O200K_PREFIXES) else "cl100k_base")


def count(model: str, text: str) -> int:
    return len(encoding_for(model).encode(text)) if text else 0


def _text_of(value: Any) -> str:
    """The text a chat message or prompt carries; images and audio are not counted."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append(item["text"])
        return "\n".join(parts)
    return ""


def count_prompt(model: str, endpoint: str, body: dict[str, Any]) -> int:
    if endpoint == "chat":
        total = TOKENS_PER_REPLY
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            total += TOKENS_PER_MESSAGE + count(model, _text_of(message.get("content")))
            if isinstance(message.get("name"), str):
                total += 1 + count(model, message["name"])
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    total += count(model, str(function.get("name", "")) + str(function.get("arguments", "")))
        return total
    if endpoint == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
            return len(prompt)
        return count(model, _text_of(prompt))
    if endpoint == "embeddings":
        data = body.get("input")
        if isinstance(data, list) and data and isinstance(data[0], int):
            return len(data)
        if isinstance(data, list) and data and isinstance(data[0], list):
            return sum(len(x) for x in data)
        return count(model, _text_of(data))
    return count(model, _text_of(body.get("input")))
