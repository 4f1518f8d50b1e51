"""Fake gemini upstream endpoints, served by tests.fake_upstream.FakeUpstream."""

from __future__ import annotations

from typing import Any


def owns(method: str, path: str) -> bool:
    return False


def handle(handler: Any, path: str, body: Any) -> None:
    raise NotImplementedError


def failure(handler: Any, status: int, body: Any) -> None:
    raise NotImplementedError
