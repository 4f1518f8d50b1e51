"""Token counting for estimated usage: `tiktoken`, fed with the cl100k and o200k encoding files that the
`bpe-openai` wheel ships, so nothing is ever downloaded at run time.

tiktoken fetches an encoding file by URL and caches it under `TIKTOKEN_CACHE_DIR`, keyed by the SHA-1 of the
URL, checking the file's SHA-256 against the hash it expects. We put the shipped file in that cache before
tiktoken looks, so its own integrity check still runs and it never reaches for the network. Encodings load
on first use only (each costs tens of MB): they are needed only when an upstream reports no usage, or a
stream is cut before its usage arrives.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import tiktoken

O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")
TOKENS_PER_MESSAGE = 3  # OpenAI's cookbook figure for chat formatting overhead
TOKENS_PER_REPLY = 3
ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"  # tiktoken's cache key


def _seed_cache(name: str) -> None:
    cache_dir = os.environ.setdefault(
        "TIKTOKEN_CACHE_DIR", os.path.join(tempfile.gettempdir(), "relayhouse-tiktoken")
    )
    target = Path(cache_dir) / hashlib.sha1(ENCODING_URL.format(name=name).encode()).hexdigest()
    if target.exists():
        return
    spec = importlib.util.find_spec("bpe_openai")  # located, not imported: only its data files are wanted
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the bpe-openai package, which ships the encoding files, is not installed")
    shipped = Path(spec.submodule_search_locations[0]) / "data" / f"{name}.tiktoken.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(gzip.decompress(shipped.read_bytes()))
    partial.replace(target)


@cache
def encoding(name: str) -> Any:
    _seed_cache(name)
    return tiktoken.get_encoding(name)


def encoding_for(model: str) -> Any:
    base = model.rsplit("/", 1)[-1].lower()
    return encoding("o200k_base" if base.startswith(O200K_PREFIXES) else "cl100k_base")


def count(model: str, text: str) -> int:
    return len(encoding_for(model).encode(text, disallowed_special=())) if text else 0


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
