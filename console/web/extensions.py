"""The Flask extensions every console page may use, made here so that a page module can import them at its
top: `htmx` (is this an htmx request, and for which target) and `csrf` (a webhook exempts itself)."""

from __future__ import annotations

from flask_htmx import HTMX
from flask_wtf.csrf import CSRFProtect

htmx = HTMX()
csrf = CSRFProtect()
