"""Bounds on values that come in from outside: every string fits its column, every integer its SQL type,
every decimal a sane range, before any of them reaches the database.

PostgreSQL refuses a string longer than its `VARCHAR(n)`, an integer beyond its column's type, and any NUL
character, and each refusal would otherwise surface as a 500. SQLite accepts them all, so without these
checks the two backends would disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import InstrumentedAttribute

from gateway.neutral import bad_request

INT32 = (-(2**31), 2**31 - 1)  # SQL INTEGER
INT64 = (-(2**63), 2**63 - 1)  # SQL BIGINT
TEXT_MAX = 4096  # strings kept in TEXT columns (reasons, upstream keys): long enough, never unbounded


def column_length(column: InstrumentedAttribute) -> int:
    """The `n` of a `String(n)` column, read from the model so the check cannot drift from the schema."""
    kind = column.property.columns[0].type
    assert isinstance(kind, String) and kind.length, column
    return kind.length


def integer_range(column: InstrumentedAttribute) -> tuple[int, int]:
    return INT64 if isinstance(column.property.columns[0].type, BigInteger) else INT32


def text(value: Any, param: str, max_length: int, min_length: int = 0) -> str:
    """A string of `min_length` to `max_length` characters that the database can store."""
    if not isinstance(value, str) or not min_length <= len(value) <= max_length:
        low = "" if min_length == 0 else f"{min_length} to "
        raise bad_request(f"{param} must be a string of {low or 'at most '}{max_length} characters", param)
    if "\x00" in value:
        raise bad_request(f"{param} must not contain a NUL character", param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"{param} must be valid Unicode text", param) from None
    return value


def texts(value: Any, param: str, max_length: int, max_items: int = 1000) -> list[str]:
    """A list of non-empty strings (surrounding spaces removed), each within `max_length`."""
    if not isinstance(value, list) or len(value) > max_items:
        raise bad_request(f"{param} must be a list of at most {max_items} strings", param)
    items = [text(v, param, max_length).strip() for v in value]
    if not all(items):
        raise bad_request(f"{param} must hold non-empty strings", param)
    return items


def integer(value: Any, param: str, low: int, high: int) -> int:
    """A JSON integer (not a boolean, not a float) from `low` to `high`."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(f"{param} must be an integer from {low} to {high}", param)
    return value


def query_integer(value: str, param: str, low: int = INT32[0], high: int = INT32[1]) -> int:
    """An integer query or path parameter within its column's type."""
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"{param} must be an integer", param) from None
    if not low <= number <= high:
        raise bad_request(f"{param} must be an integer from {low} to {high}", param)
    return number


def decimal(value: Any, param: str, low: Decimal, high: Decimal, places: int) -> Decimal:
    """A JSON number or decimal string from `low` to `high` with at most `places` decimal places.

    The range is checked on the exponent before any arithmetic: "1e999999999" is a valid Decimal whose
    integer value has a billion digits."""
    if isinstance(value, bool) or not isinstance(value, int | float | str) or len(str(value)) > 64:
        raise bad_request(f"{param} must be a decimal number", param)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise bad_request(f"{param} must be a decimal number", param) from None
    if not number.is_finite() or number.adjusted() > 30 or not low <= number <= high:
        raise bad_request(f"{param} must be a number from {low} to {high}", param)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if number and -exponent > places and number != number.quantize(Decimal(1).scaleb(-places)):
        raise bad_request(f"{param} must have at most {places} decimal places", param)
    return number


def only(fields: dict[str, Any], allowed: Iterable[str], what: str) -> None:
    """Refuse a misspelled or unknown field by name instead of dropping it without a word."""
    known = set(allowed)
    for name in fields:
        if name not in known:
            raise bad_request(f"unknown {what} field {name!r}; known: {', '.join(sorted(known))}", name)
