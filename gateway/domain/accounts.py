"""Accounts: users, their roles and groups, passwords and admin access tokens."""

from __future__ import annotations

import secrets
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from gateway.domain.crypto import hash_secret, new_token
from gateway.domain.models import User, db
from gateway.neutral import GatewayError, bad_request

ROLES = ("user", "admin", "root")
STATUSES = ("active", "disabled")


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "group": user.group,
        "status": user.status,
        "balance_micro_usd": user.balance_micro_usd,
        "created_at": user.created_at.isoformat() + "Z",
    }


def _check_password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < 8:
        raise bad_request("password must be a string of at least 8 characters", "password")
    return password


def create_user(username: Any, password: Any, role: str = "user", group: str = "default") -> User:
    if not isinstance(username, str) or not 1 <= len(username.strip()) <= 64:
        raise bad_request("username must be 1 to 64 characters", "username")
    if role not in ROLES:
        raise bad_request(f"role must be one of {', '.join(ROLES)}", "role")
    if not isinstance(group, str) or not group:
        raise bad_request("group must be a non-empty string", "group")
    username = username.strip()
    if db.session.scalar(db.select(User.id).where(User.username == username)) is not None:
        raise GatewayError(409, f"username {username!r} is taken", "invalid_request_error", "conflict")
    user = User(
        username=username,
        password_hash=generate_password_hash(_check_password(password)),
        role=role,
        group=group,
    )
    db.session.add(user)
    db.session.commit()
    return user


def update_user(user: User, changes: dict[str, Any]) -> User:
    if "role" in changes:
        if changes["role"] not in ROLES:
            raise bad_request(f"role must be one of {', '.join(ROLES)}", "role")
        user.role = changes["role"]
    if "group" in changes:
        if not isinstance(changes["group"], str) or not changes["group"]:
            raise bad_request("group must be a non-empty string", "group")
        user.group = changes["group"]
    if "status" in changes:
        if changes["status"] not in STATUSES:
            raise bad_request("status must be active or disabled", "status")
        user.status = changes["status"]
    if "password" in changes:
        user.password_hash = generate_password_hash(_check_password(changes["password"]))
        user.session_epoch += 1  # a new password ends every console session
    db.session.commit()
    return user


def end_sessions(user: User) -> None:
    user.session_epoch += 1
    db.session.commit()


def authenticate(username: str, password: str) -> User | None:
    user = db.session.scalar(db.select(User).where(User.username == username))
    if user is None or not check_password_hash(user.password_hash, password):
        return None
    return user if user.status == "active" else None


def issue_access_token(user: User) -> str:
    """A new admin access token for `Authorization: Bearer`; it replaces the previous one."""
    token = new_token("rh-")
    user.access_token_hash = hash_secret(token)
    db.session.commit()
    return token


def user_by_access_token(token: str) -> User | None:
    return db.session.scalar(db.select(User).where(User.access_token_hash == hash_secret(token)))


def ensure_root(password: str = "") -> str | None:
    """Create the root admin on first start; return the generated password when one was made."""
    if db.session.scalar(db.select(User.id).where(User.role == "root")) is not None:
        return None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    db.session.add(User(username="root", password_hash=generate_password_hash(password), role="root"))
    db.session.commit()
    return generated
