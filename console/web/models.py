"""The models page (`/models`): every model the signed-in user's group can call, as `GET /v1/models`
decides, with the channel types that serve it, its context length and capabilities where known (a small
table of well-known families), its prices per 1M tokens or per request (the catalog's, times the group's
multiplier, as the relay bills them), and the endpoints and protocols that serve it. The list is searched
and filtered on the server: htmx swaps it as the filters change, and a plain GET with `?q=` works too.

Clicking a model's tag fills that model into every snippet on the page (`/partials/snippets?model=X`, which
htmx swaps in; without JavaScript the tag is a link to `/models?model=X`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request
from flask_babel import gettext as _
from flask_login import current_user, login_required

from console.web import snippets
from console.web.extensions import htmx
from console.web.home import base_url
from gateway.domain.channels import CHANNEL_TYPES
from gateway.domain.pricing import PriceInfo
from gateway.frontends.v1 import _models_for
from gateway.protocols import serves_responses

bp = Blueprint("models", __name__)
Q_MAX = 128


@dataclass(slots=True, frozen=True)
class Family:
    """What is known of a family of models, by the start of its name (or a pattern anywhere in it)."""

    pattern: str  # a regular expression, searched in the lower-cased model name
    kind: str  # chat, embeddings, completion, moderation, image
    context_tokens: int | None
    capabilities: tuple[str, ...] = ()


# first match wins: the specific patterns before the general ones. Context lengths from each provider's
# model reference (platform.openai.com/docs/models, docs.anthropic.com/en/docs/about-claude/models,
# ai.google.dev/gemini-api/docs/models, api-docs.deepseek.com).
FAMILIES: tuple[Family, ...] = (
    Family(r"embed", "embeddings", 8192, ("embeddings",)),
    Family(r"moderation", "moderation", None, ("moderation",)),
    Family(r"^(dall-e|gpt-image|imagen)", "image", None, ("image",)),
    Family(r"instruct$|^(babbage|davinci)", "completion", 4096, ("completion",)),
    Family(r"^gpt-4o", "chat", 128_000, ("vision", "tools")),
    Family(r"^gpt-4\.1", "chat", 1_047_576, ("vision", "tools")),
    Family(r"^gpt-5", "chat", 400_000, ("vision", "tools", "reasoning")),
    Family(r"^o[134]", "chat", 200_000, ("vision", "tools", "reasoning")),
    Family(r"^gpt-4-turbo", "chat", 128_000, ("vision", "tools")),
    Family(r"^gpt-4", "chat", 8192, ("tools",)),
    Family(r"^gpt-3\.5-turbo", "chat", 16_385, ("tools",)),
    Family(r"^claude-(3-7|sonnet-4|opus-4|haiku-4)", "chat", 200_000, ("vision", "tools", "reasoning")),
    Family(r"^claude-", "chat", 200_000, ("vision", "tools")),
    Family(r"^gemini-(2\.5|3)", "chat", 1_048_576, ("vision", "tools", "reasoning")),
    Family(r"^gemini-", "chat", 1_048_576, ("vision", "tools")),
    Family(r"^deepseek-reasoner", "chat", 128_000, ("reasoning",)),
    Family(r"^deepseek-", "chat", 128_000, ("tools",)),
    Family(r"^(mistral-large|mistral-medium|codestral)", "chat", 128_000, ("tools",)),
    Family(r"^grok-", "chat", 131_072, ("tools",)),
)
UNKNOWN = Family("", "chat", None, ())
CAPABILITY_LABELS: dict[str, Callable[[], str]] = {
    "vision": lambda: _("vision"),
    "tools": lambda: _("tools"),
    "reasoning": lambda: _("reasoning"),
    "embeddings": lambda: _("embeddings"),
    "moderation": lambda: _("moderation"),
    "image": lambda: _("image generation"),
    "completion": lambda: _("text completion"),
}


@dataclass(slots=True, frozen=True)
class Endpoint:
    path: str  # as TASK_ENDPOINTS names it, `{model}` where the model goes
    protocol: str  # OpenAI, OpenAI Responses, Anthropic, Gemini
    native: bool  # some channel speaks it; else converted


@dataclass(slots=True)
class ModelRow:
    name: str
    family: Family
    channel_types: list[str] = field(default_factory=list)  # CHANNEL_TYPES names
    price: PriceInfo | None = None  # None: free
    endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def providers(self) -> list[str]:
        return [CHANNEL_TYPES[t].label for t in self.channel_types]

    @property
    def endpoint_paths(self) -> set[str]:
        return {e.path for e in self.endpoints}


def family_of(model: str) -> Family:
    name = model.lower().rsplit("/", 1)[-1]  # openrouter's "anthropic/claude-..." reads as "claude-..."
    return next((f for f in FAMILIES if re.search(f.pattern, name)), UNKNOWN)


def endpoints(kind: str, channels: list[Any]) -> list[Endpoint]:
    """The endpoints that serve a model of `kind` on these channels, and whether natively (a channel speaks
    the endpoint's protocol) or converted (gateway.protocols.route: chat converts everywhere, embeddings to
    OpenAI and Gemini upstreams; the other kinds pass through to their own protocol only)."""
    protocols = {CHANNEL_TYPES[c.type].protocol for c in channels}
    if kind == "chat":
        return [
            Endpoint("/v1/chat/completions", "OpenAI", "openai" in protocols),
            Endpoint("/v1/responses", "OpenAI Responses", any(serves_responses(c) for c in channels)),
            Endpoint("/v1/messages", "Anthropic", "anthropic" in protocols),
            Endpoint("/v1beta/models/{model}:generateContent", "Gemini", "gemini" in protocols),
        ]
    if kind == "embeddings" and protocols & {"openai", "gemini"}:
        return [
            Endpoint("/v1/embeddings", "OpenAI", "openai" in protocols),
            Endpoint("/v1beta/models/{model}:embedContent", "Gemini", "gemini" in protocols),
        ]
    if kind == "completion" and "openai" in protocols:
        return [Endpoint("/v1/completions", "OpenAI", True)]
    if kind == "moderation" and "openai" in protocols:
        return [Endpoint("/v1/moderations", "OpenAI", True)]
    if kind == "image" and "openai" in protocols:
        return [Endpoint("/v1/images/generations", "OpenAI", True)]
    return []  # served by no channel that speaks its endpoint (such as Imagen on a Gemini channel)


def _scaled(price: PriceInfo, multiplier: Fraction) -> PriceInfo:
    def times(micro: int | None) -> int | None:
        return None if micro is None else round(micro * multiplier)

    return PriceInfo(
        price.model,
        times(price.input_micro_per_mtok) or 0,
        times(price.output_micro_per_mtok) or 0,
        times(price.cached_input_micro_per_mtok),
        times(price.per_request_micro),
        times(price.cache_write_micro_per_mtok),
    )


def model_rows(user: Any) -> tuple[list[ModelRow], Fraction]:
    """Every model `user`'s group can call, and the group's price multiplier."""
    rt = current_app.extensions["relayhouse"]
    snap = rt.catalog.snapshot
    multiplier = snap.multipliers.get(user.group, Fraction(1)) or Fraction(1)
    rows = []
    for name in _models_for(rt, SimpleNamespace(group=user.group, models=None)):
        serving = [c for c in snap.channels.values() if name in c.models and user.group in c.groups]
        price = snap.prices.get(name)
        family = family_of(name)
        rows.append(
            ModelRow(
                name=name,
                family=family,
                channel_types=sorted({c.type for c in serving}),
                price=None if price is None else _scaled(price, multiplier),
                endpoints=endpoints(family.kind, serving),
            )
        )
    return rows, multiplier


def _matches(row: ModelRow, q: str, provider: str, capability: str) -> bool:
    return (
        (not q or q.lower() in row.name.lower())
        and (not provider or provider in row.channel_types)
        and (not capability or capability in row.family.capabilities)
    )


def _filters() -> dict[str, str]:
    return {name: request.args.get(name, "")[:Q_MAX].strip() for name in ("q", "provider", "capability")}


def _snippet_context(rows: list[ModelRow], model: str | None) -> dict[str, Any]:
    chosen = next((r for r in rows if r.name == model), None)
    if chosen is None:  # the first model that has snippets, else the first
        chosen = next((r for r in rows if r.endpoints), rows[0] if rows else None)
    groups = [] if chosen is None else snippets.for_model(chosen.name, chosen.endpoint_paths, base_url())
    return {"chosen": chosen, "snippet_groups": groups}


@bp.get("/models")
@login_required
def models() -> str:
    rows, multiplier = model_rows(current_user.row)
    filters = _filters()
    shown = [r for r in rows if _matches(r, **filters)]
    context = {
        "rows": shown,
        "total": len(rows),
        "filters": filters,
        "multiplier": multiplier,
        "providers": sorted({t for r in rows for t in r.channel_types}),
        "capabilities": CAPABILITY_LABELS,
        "channel_types": CHANNEL_TYPES,
    }
    if htmx and htmx.target == "model-list" and not htmx.history_restore_request:
        return render_template("partials/models_list.html", **context)
    return render_template(
        "models.html", **context, **_snippet_context(rows, request.args.get("model")), base_url=base_url()
    )


@bp.get("/partials/snippets")
@login_required
def model_snippets() -> str:
    rows, _multiplier = model_rows(current_user.row)
    model = request.args.get("model", "")
    if model not in {r.name for r in rows}:
        abort(404)
    return render_template("partials/snippets.html", **_snippet_context(rows, model))
