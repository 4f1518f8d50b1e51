"""Prices and the one cost formula.

A price is kept in integer micro-USD per one million tokens (or micro-USD per request). A request's cost
is computed exactly with integers and fractions and rounded to the nearest micro-USD once (half up).
Cache reads (`cached_tokens`) and cache writes (`cache_write_tokens`) are part of `prompt_tokens` and are
billed at the cached-input and cache-write prices instead of the input price (each the input price when
unset). Reasoning tokens are part of `completion_tokens`, billed as output. The group multiplier is exact
decimal text, such as "1.5".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from gateway.domain import bounds
from gateway.domain.models import Group, Price, Setting, db, utcnow
from gateway.neutral import Usage, bad_request

MICRO = 1_000_000
USD_PLACES = 6  # one micro-USD
USD_MAX = Decimal(10**9)  # any one amount, in USD: far above a real price or top-up, far below BIGINT
PRICE_MAX = Decimal(10**6)  # USD per million tokens or per request
MULTIPLIER_MAX = Decimal(1000)
MODEL_MAX = bounds.column_length(Price.model)
GROUP_MAX = bounds.column_length(Group.name)
PRICE_FIELDS = {
    "input_per_mtok_usd": "input_micro_per_mtok",
    "output_per_mtok_usd": "output_micro_per_mtok",
    "cached_input_per_mtok_usd": "cached_input_micro_per_mtok",
    "cache_write_per_mtok_usd": "cache_write_micro_per_mtok",
    "per_request_usd": "per_request_micro",
}


@dataclass(slots=True, frozen=True)
class PriceInfo:
    model: str
    input_micro_per_mtok: int = 0
    output_micro_per_mtok: int = 0
    cached_input_micro_per_mtok: int | None = None
    per_request_micro: int | None = None
    cache_write_micro_per_mtok: int | None = None


def usd_to_micro(value: Any, param: str, low: Decimal = -USD_MAX, high: Decimal = USD_MAX) -> int:
    """Exact conversion of a JSON number or decimal string of USD into integer micro-USD: within
    `low`..`high` and to the micro-USD, or a 400 naming `param` (never a rounding nobody asked for)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad_request(f"{param} must be a number of US dollars", param)
    return int(bounds.decimal(value, param, low, high, USD_PLACES) * MICRO)


def micro_to_usd(micro: int | None) -> float | None:
    return None if micro is None else micro / MICRO


def cost_micro_usd(price: PriceInfo, usage: Usage, multiplier: Fraction = Fraction(1)) -> int:
    if price.per_request_micro is not None:  # an image generation pays it per image
        numerator, denominator = price.per_request_micro * max(1, usage.images), 1
    else:
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
        cached_price = price.cached_input_micro_per_mtok
        if cached_price is None:
            cached_price = price.input_micro_per_mtok
        write_price = price.cache_write_micro_per_mtok
        if write_price is None:
            write_price = price.input_micro_per_mtok
        numerator = (
            (usage.prompt_tokens - cached - written) * price.input_micro_per_mtok
            + cached * cached_price
            + written * write_price
            + usage.completion_tokens * price.output_micro_per_mtok
        )
        denominator = MICRO
    numerator *= multiplier.numerator
    denominator *= multiplier.denominator
    return (2 * numerator + denominator) // (2 * denominator)  # round half up, once, in integers


def parse_multiplier(text: str) -> Fraction:
    """The stored decimal text as an exact fraction. Values out of range (stored before the API bounded
    them) raise ValueError before any arithmetic, so a huge exponent cannot stall the catalog."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"group multiplier {text[:40]!r} is not a decimal") from exc
    if not value.is_finite() or not 0 <= value <= MULTIPLIER_MAX or value.as_tuple().exponent < -30:
        raise ValueError(f"group multiplier {text[:40]!r} is out of range 0..{MULTIPLIER_MAX}")
    return Fraction(value)


def model_name(model: Any, param: str = "model") -> str:
    """A model name as prices and logs store it."""
    return bounds.text(model, param, MODEL_MAX, 1)


def price_json(price: Price) -> dict[str, Any]:
    return {
        "model": price.model,
        "input_per_mtok_usd": micro_to_usd(price.input_micro_per_mtok),
        "output_per_mtok_usd": micro_to_usd(price.output_micro_per_mtok),
        "cached_input_per_mtok_usd": micro_to_usd(price.cached_input_micro_per_mtok),
        "cache_write_per_mtok_usd": micro_to_usd(price.cache_write_micro_per_mtok),
        "per_request_usd": micro_to_usd(price.per_request_micro),
        "updated_at": price.updated_at.isoformat() + "Z",
    }


def put_price(model: str, fields: dict[str, Any]) -> Price:
    model = model_name(model)
    bounds.only(fields, PRICE_FIELDS, "price")
    price = db.session.get(Price, model) or Price(model=model)
    for name, column in PRICE_FIELDS.items():
        value = fields.get(name)
        if value is None:
            setattr(price, column, 0 if column in ("input_micro_per_mtok", "output_micro_per_mtok") else None)
            continue
        setattr(price, column, usd_to_micro(value, name, Decimal(0), PRICE_MAX))
    price.updated_at = utcnow()
    db.session.add(price)
    db.session.commit()
    return price


def delete_price(model: str) -> bool:
    model = model_name(model)
    price = db.session.get(Price, model)
    if price is None:
        return False
    db.session.delete(price)
    db.session.commit()
    return True


def put_group(name: str, multiplier: Any) -> Group:
    name = bounds.text(name, "name", GROUP_MAX, 1)
    value = bounds.decimal(multiplier, "multiplier", Decimal(0), MULTIPLIER_MAX, USD_PLACES)
    group = db.session.get(Group, name) or Group(name=name)
    group.multiplier = format(value.normalize(), "f")  # "1.50" is "1.5", "1E+2" is "100"
    db.session.add(group)
    db.session.commit()
    return group


def get_setting(key: str, default: Any = None) -> Any:
    row = db.session.get(Setting, key)
    return default if row is None else row.value


def put_setting(key: str, value: Any) -> None:
    row = db.session.get(Setting, key) or Setting(key=key)
    row.value = value
    db.session.add(row)
    db.session.commit()
