"""Protocol modules and channel types.

Each protocol module (see `gateway.protocols.base`) speaks one wire protocol in both directions. A channel
type names the protocol its upstream speaks, where that upstream lives by default, and whether it serves
OpenAI's Responses API natively. `route` decides, for one call and one channel, which module talks to the
upstream and whether the call passes through as bytes or converts through the hub.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.domain.channels import CHANNEL_TYPES
from gateway.neutral import Call
from gateway.protocols import anthropic, gemini, openai, responses
from gateway.protocols.base import ProtocolModule

if TYPE_CHECKING:
    from gateway.catalog import ChannelInfo

MODULES: dict[str, ProtocolModule] = {
    "openai": openai,  # type: ignore[dict-item]
    "responses": responses,  # type: ignore[dict-item]
    "anthropic": anthropic,  # type: ignore[dict-item]
    "gemini": gemini,  # type: ignore[dict-item]
}
CONVERTIBLE = ("chat", "embeddings")  # the hub families; other kinds pass through to their own protocol only


def channel_protocol(channel: ChannelInfo) -> str:
    return CHANNEL_TYPES[channel.type].protocol


def serves_responses(channel: ChannelInfo) -> bool:
    """Whether the channel's upstream takes `/v1/responses` as it is: its type's default, unless its
    `responses` setting says `native` or `convert`."""
    setting = channel.settings.get("responses")
    if setting in ("native", "convert"):
        return setting == "native"
    return CHANNEL_TYPES[channel.type].responses


def route(call: Call, channel: ChannelInfo) -> tuple[ProtocolModule, bool] | None:
    """The module that talks to `channel`'s upstream for `call`, and whether the call passes through
    natively; None when the channel cannot serve this kind of call at all."""
    protocol = channel_protocol(channel)
    if call.protocol == "responses" and protocol == "openai" and serves_responses(channel):
        return MODULES["responses"], True
    if call.protocol == protocol:
        return MODULES[protocol], True
    if call.kind in CONVERTIBLE:
        return MODULES[protocol], False
    return None
