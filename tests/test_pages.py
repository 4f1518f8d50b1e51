"""Console pages (Flask test client on an in-process app) and the translations behind them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app import create_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"instance_dir": str(tmp_path), "database_url": f"sqlite:///{tmp_path / 'pages.db'}"})
    yield app
    app.extensions["relayhouse"].stop()


def test_home_page_shows_base_url_and_status(app: Flask) -> None:
    page = app.test_client().get("/", base_url="http://gw.example:3000")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<pre id="base-url">http://gw.example:3000/v1</pre>' in html
    assert 'base_url="http://gw.example:3000/v1"' in html  # the Python snippet is ready to copy
    assert '<dd id="channels-enabled">0</dd>' in html
    assert "/static/style.css" in html and app.test_client().get("/static/style.css").status_code == 200


def test_home_page_speaks_the_browsers_language(app: Flask) -> None:
    client = app.test_client()
    zh = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert '<html lang="zh">' in zh and "第一个请求" in zh
    assert '<html lang="en">' in client.get("/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "第一个请求" in client.get("/?lang=zh").get_data(as_text=True)


def test_every_key_in_every_language() -> None:
    catalogs = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (ROOT / "i18n").glob("*.json")}
    assert len(catalogs) >= 2
    keys = set(catalogs["en"])
    for language, catalog in catalogs.items():
        assert set(catalog) == keys, language
        assert all(isinstance(v, str) and v.strip() for v in catalog.values()), language
    used = set()
    for template in (ROOT / "templates").rglob("*.html"):
        used |= set(re.findall(r"""t\(["'](\w+)["']\)""", template.read_text(encoding="utf-8")))
    assert used and used <= keys, used - keys
