"""Translations for the console: one JSON file per language in `i18n/`, loaded once at start."""

from __future__ import annotations

import json

from gateway.config import PROJECT_ROOT

DEFAULT_LANGUAGE = "en"
CATALOGS: dict[str, dict[str, str]] = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))
    for path in sorted((PROJECT_ROOT / "i18n").glob("*.json"))
}


def pick_language(asked: str | None, accept_languages: list[str]) -> str:
    """`?lang=` first, then the browser's Accept-Language order, then English."""
    for candidate in ([asked] if asked else []) + accept_languages:
        base = candidate.lower().split("-")[0]
        if base in CATALOGS:
            return base
    return DEFAULT_LANGUAGE


def translator(language: str):  # noqa: ANN201
    catalog = CATALOGS.get(language, CATALOGS[DEFAULT_LANGUAGE])

    def t(key: str) -> str:
        return catalog.get(key) or CATALOGS[DEFAULT_LANGUAGE][key]

    return t
