"""Token counting for estimated usage: `tiktoken`, fed with the cl100k and o200k encoding files that the
`bpe-openai` wheel ships, so nothing is ever downloaded at run time.

tiktoken fetches an encoding file by URL and caches it under `TIKTOKEN_CACHE_DIR`, keyed by the SHA-1 of the
URL, checking the file's SHA-256 against the hash it expects. We put the shipped file in that cache before
tiktoken looks, so its own integrity check still runs and it never reaches for the network. Encodings load
on first use only (each costs tens of MB): they are needed only when an upstream reports no usage, or a
stream is cut before its usage arrives.

Counting never stalls the event loop: a count over more than `INLINE_CHARS` of text runs on gevent's native
thread pool (`estimate_usage`). tiktoken's Rust core releases the GIL while it encodes, but not while it
builds the Python list of token ids (some 300 ms for a 30 MB prompt), so a long text is encoded in pieces
of `PIECE_CHARS`, cut at a space, and each piece's list is dropped at once: the GIL is never held for long.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import gevent
import tiktoken

from gateway.neutral import Usage

O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")
TOKENS_PER_MESSAGE = 3  # OpenAI's cookbook figure for chat formatting overhead
TOKENS_PER_REPLY = 3
ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"  # tiktoken's cache key
INLINE_CHARS = 32_768  # about a millisecond of encoding: less is counted on the event loop itself
PIECE_CHARS = 262_144  # a few milliseconds of GIL for each piece's list of token ids


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
    if not text:
        return 0
    encode = encoding_for(model).encode
    if len(text) <= PIECE_CHARS:
        return len(encode(text, disallowed_special=()))
    total, start = 0, 0
    while start < len(text):
        end = start + PIECE_CHARS
        if end < len(text):  # cut before a space, where tokens split anyway: the sum is (nearly) exact
            space = text.rfind(" ", start + PIECE_CHARS // 2, end)
            end = space if space > 0 else end
        total += len(encode(text[start:end], disallowed_special=()))
        start = end
    return total


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


def estimate_usage(model: str, endpoint: str, body: dict[str, Any], completion_text: str, size: int) -> Usage:
    """The usage of a request whose upstream reported none: its prompt plus the text delivered. `size` (the
    request's bytes plus the text's length) decides whether the count leaves the event loop."""
    if size <= INLINE_CHARS:
        return _usage(model, endpoint, body, completion_text)
    return gevent.get_hub().threadpool.apply(_usage, (model, endpoint, body, completion_text))


def _usage(model: str, endpoint: str, body: dict[str, Any], completion_text: str) -> Usage:
    return Usage(count_prompt(model, endpoint, body), count(model, completion_text), 0, "estimated")


def reserve_prompt_tokens(endpoint: str, body: dict[str, Any], raw_bytes: int) -> int:
    """An upper-ish bound on a request's prompt tokens, cheap enough for every request (no tokenizer): a
    token is rarely shorter than 3 bytes of JSON text. An image's bytes are no measure of its tokens, so an
    image part counts as its allowance instead (`image_parts`)."""
    image_bytes, image_tokens = image_parts(body) if endpoint == "chat" else (0, 0)  # `kind`, any protocol
    return (raw_bytes - image_bytes) // 3 + 1 + image_tokens


# OpenAI's vision pricing: a high-detail image is scaled to fit 2048 x 2048, then its shorter side to 768,
# and costs 85 tokens plus 170 per 512-pixel tile; at most 2 x 4 tiles (768 x 2048), so 1,445 tokens.
# A low-detail image costs 85 whatever its size.
IMAGE_TOKENS_HIGH = 85 + 170 * 8
IMAGE_TOKENS_LOW = 85


def image_parts(body: dict[str, Any]) -> tuple[int, int]:
    """The characters of a request's image parts (their URLs or base64 data) and their token allowance, in
    any protocol's shape: OpenAI's `image_url` parts, Anthropic's `image` blocks, Gemini's `inlineData`
    parts and the Responses API's `input_image` items."""
    chars = allowance = 0
    for part in _parts(body):
        kind = part.get("type")
        data: Any = None
        detail = None
        if kind == "image_url":
            image = part.get("image_url")
            data = image.get("url") if isinstance(image, dict) else image
            detail = image.get("detail") if isinstance(image, dict) else None
        elif kind == "input_image":
            data, detail = part.get("image_url"), part.get("detail")
        elif kind == "image":
            source = part.get("source")
            data = (source.get("data") or source.get("url")) if isinstance(source, dict) else None
        elif isinstance(part.get("inlineData"), dict) and str(
            part["inlineData"].get("mimeType", "")
        ).startswith("image/"):
            data = part["inlineData"].get("data")
        else:
            continue
        if isinstance(data, str):
            chars += len(data)
        allowance += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
    return chars, allowance


def _parts(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The content parts of a request's turns: `messages` (OpenAI, Anthropic), `contents` (Gemini) or
    `input` items (Responses)."""
    for name, key in (("messages", "content"), ("input", "content"), ("contents", "parts")):
        turns = body.get(name)
        if not isinstance(turns, list):
            continue
        for turn in turns:
            content = turn.get(key) if isinstance(turn, dict) else None
            if isinstance(content, list):
                yield from (part for part in content if isinstance(part, dict))
            if isinstance(turn, dict) and turn.get("type") == "input_image":
                yield turn
