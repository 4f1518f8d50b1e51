"""Languages: gettext catalogs in `i18n/<locale>/LC_MESSAGES/*.po` (one source per part of the console),
merged and compiled at start into one `messages.mo` per language in the instance folder; the language a
page speaks; dates, numbers and money formatted for it by Babel.

The language is the one the user chose (the switcher: remembered in the session and on the account), else
the best match of the browser's `Accept-Language`, else English.

Date fields are text in the page language's short date (`show_day`, `parse_day`): `<input type="date">`
speaks the browser's language, whatever the page's. They read back that form or ISO 8601, which links use.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

from babel.core import Locale
from babel.dates import format_date, format_datetime, get_date_format, parse_date
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from flask import g, request, session
from flask_login import current_user

from gateway.config import PROJECT_ROOT

CATALOGS = PROJECT_ROOT / "i18n"
LANGUAGES = {  # locale code: the language's own name, as the switcher shows it
    "en": "English",
    "zh_Hans": "简体中文",
    "zh_Hant": "繁體中文",
    "vi": "Tiếng Việt",
    "ja": "日本語",
}
DEFAULT = "en"
# Accept-Language tags (lower case, without region unless it decides the script) to our codes
TAGS = {"zh-tw": "zh_Hant", "zh-hk": "zh_Hant", "zh-mo": "zh_Hant", "zh-hant": "zh_Hant", "zh": "zh_Hans"}


def read_catalog(language: str) -> Catalog:
    """A language's messages: all its `.po` sources in one catalog."""
    merged = Catalog(locale=language)
    for source in sorted((CATALOGS / language / "LC_MESSAGES").glob("*.po")):
        with source.open("rb") as po:
            for message in read_po(po, locale=language):
                if message.id:
                    merged[message.id] = message
    return merged


def compile_catalogs(instance_path: str) -> Path:
    """Each language's sources compiled into one `messages.mo` under the instance folder, again only when
    one of them is newer than it."""
    out = Path(instance_path) / "i18n"
    for language in LANGUAGES:
        sources = list((CATALOGS / language / "LC_MESSAGES").glob("*.po"))
        target = out / language / "LC_MESSAGES" / "messages.mo"
        newest = max((p.stat().st_mtime for p in sources), default=0)
        if not sources or (target.exists() and target.stat().st_mtime >= newest):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")  # several workers may compile at once
        with partial.open("wb") as mo:
            write_mo(mo, read_catalog(language))
        os.replace(partial, target)
    return out


def from_header(values: list[str]) -> str | None:
    """Our language for the first tag of an Accept-Language list we speak."""
    for tag in values:
        tag = tag.lower().replace("_", "-")
        if tag in TAGS:
            return TAGS[tag]
        base = tag.split("-")[0]
        if tag.startswith("zh-") and ("hant" in tag or tag[3:] in ("tw", "hk", "mo")):
            return "zh_Hant"
        if base in TAGS:
            return TAGS[base]
        if base in LANGUAGES:
            return base
    return None


def select() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    user = current_user if request else None
    if user is not None and getattr(user, "is_authenticated", False) and user.language in LANGUAGES:
        return user.language
    return from_header(list(request.accept_languages.values())) or DEFAULT


def current() -> str:
    if "language" not in g:
        g.language = select()
    return g.language


def html_lang(code: str) -> str:
    return code.replace("_", "-")


def money(micro_usd: int | None) -> str:
    """Micro-USD as US dollars in the page's language (six decimals when less than a cent matters)."""
    value = Decimal(micro_usd or 0) / 1_000_000
    return format_currency(value, "USD", locale=Locale.parse(current()), decimal_quantization=False)


def number(value: int | float | None) -> str:
    return format_decimal(value or 0, locale=Locale.parse(current()))


def when(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return format_datetime(value, "medium", tzinfo=dt.UTC, locale=Locale.parse(current()))


def parse_day(value: str | None) -> dt.date | None:
    """A date as ISO 8601 or in the page language's short form; None when empty or not a date."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return parse_date(value, locale=Locale.parse(current()), format="short")
    except (ValueError, IndexError):  # not a date, or too few numbers for one
        return None


def _day_pattern() -> str:
    """The page language's short date with the whole year: `M/d/y`, `d/M/y`, `y/MM/dd`..."""
    pattern = get_date_format("short", locale=Locale.parse(current())).pattern
    return pattern if "yyyy" in pattern else pattern.replace("yy", "y")


def show_day(day: dt.date | dt.datetime | None) -> str:
    """A date as the date fields show it."""
    if isinstance(day, dt.datetime):
        day = day.date()
    return format_date(day, _day_pattern(), locale=Locale.parse(current())) if day else ""


def example_day() -> str:
    """A date for a field's placeholder, whose day and month cannot be mixed up: this year's 31 December."""
    return show_day(dt.date(dt.date.today().year, 12, 31))
