"""Upstream adaptors, one module per upstream protocol, chosen by the channel's `type`.

The relay's hub format is OpenAI's own wire format: an adaptor turns a `Call` (whose body is an OpenAI
request) into its upstream's request, and turns the upstream's answer back into OpenAI bytes and a
`Usage`. For an OpenAI-compatible upstream that is a pass-through of bytes.
"""

from __future__ import annotations

from gateway.adaptors.base import Adaptor
from gateway.adaptors.openai import OpenAIAdaptor

ADAPTORS: dict[str, Adaptor] = {"openai": OpenAIAdaptor()}


def get(channel_type: str) -> Adaptor:
    return ADAPTORS[channel_type]
