"""Secrets at rest: API keys are stored as SHA-256 hashes, upstream keys encrypted with Fernet.

The Fernet key lives in `instance/channel.key`, created on first start.
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken

API_KEY_PREFIX = "sk-"


def new_api_key() -> str:
    """`sk-` plus 48 random URL-safe characters (36 random bytes)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(36)


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(value: str) -> str:
    """Keys are long random strings, so one fast hash is enough (no salt, no stretching)."""
    return hashlib.sha256(value.encode()).hexdigest()


def visible_prefix(key: str) -> str:
    return key[:7] + "..." + key[-4:]


class Vault:
    """Encrypts and decrypts upstream keys with one Fernet key."""

    def __init__(self, fernet_key: str) -> None:
        self._fernet = Fernet(fernet_key.encode())

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:  # the instance key changed under the database
            raise ValueError("cannot decrypt an upstream key: instance/channel.key does not match") from exc
