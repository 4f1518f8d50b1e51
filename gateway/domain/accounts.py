"""Accounts: users, their roles and groups (and who may grant or change the root role), passwords and admin
access tokens."""

from __future__ import annotations

import datetime as dt
import secrets
from functools import cache
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from gateway.domain import bounds
from gateway.domain.crypto import hash_secret, new_token
from gateway.domain.models import Setting, User, db, utcnow
from gateway.neutral import GatewayError, bad_request

ROLES = ("user", "admin", "root")
ADMIN_ROLES = ("admin", "root")  # the roles that may manage every account, key and setting
STATUSES = ("active", "disabled")
USERNAME_MAX = bounds.column_length(User.username)
GROUP_MAX = bounds.column_length(User.group)
PASSWORD_MIN, PASSWORD_MAX = 8, 1024  # the upper bound keeps one login from hashing megabytes
CREATE_FIELDS = ("username", "password", "role", "group")
UPDATE_FIELDS = ("role", "group", "status", "password")


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
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise bad_request(
            f"password must be a string of {PASSWORD_MIN} to {PASSWORD_MAX} characters", "password"
        )
    return bounds.text(password, "password", PASSWORD_MAX)


def _check_group(group: Any) -> str:
    return bounds.text(group, "group", GROUP_MAX, 1)


def create_user(username: Any, password: Any, role: Any = "user", group: Any = None) -> User:
    """A new account; without a group, the admin's default group (setting `default_group`), else
    `default`."""
    if group is None:
        row = db.session.get(Setting, "default_group")
        group = row.value if row is not None and row.value else "default"
    if not isinstance(username, str) or not 1 <= len(username.strip()) <= USERNAME_MAX:
        raise bad_request(f"username must be 1 to {USERNAME_MAX} characters", "username")
    username = bounds.text(username.strip(), "username", USERNAME_MAX, 1)
    if not username.isprintable():
        raise bad_request("username must not contain control characters", "username")
    if role not in ROLES:
        raise bad_request(f"role must be one of {', '.join(ROLES)}", "role")
    group = _check_group(group)
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


def is_admin(user: User) -> bool:
    return user.role in ADMIN_ROLES


def _root_only(message: str) -> GatewayError:
    return GatewayError(403, message, "permission_denied", "root_required", "role")


def may_grant(actor: User, role: Any) -> None:
    """Only the root admin grants the root role (403), so an admin cannot raise anyone, itself included,
    above itself."""
    if role == "root" and actor.role != "root":
        raise _root_only("Only the root admin can grant the root role.")


def may_change(actor: User, user: User, role: Any = None) -> None:
    """Only the root admin changes a root account, or grants `role` root (403)."""
    if user.role == "root" and actor.role != "root":
        raise _root_only("Only the root admin can change the root admin.")
    may_grant(actor, role)


def _keeps_a_root(user: User, changes: dict[str, Any], actor: User | None) -> None:
    """Root cannot demote or disable itself, and the last active root stays: otherwise nobody could ever
    grant root again, short of editing the database."""
    demoted = changes.get("role", user.role) != "root"
    disabled = changes.get("status", user.status) != "active"
    if user.role != "root" or not (demoted or disabled):
        return
    param = "role" if demoted else "status"
    if actor is not None and actor.id == user.id:
        raise bad_request("the root admin cannot demote or disable itself", param, "root_required")
    others = db.session.scalar(
        db.select(db.func.count())
        .select_from(User)
        .where(User.role == "root", User.status == "active", User.id != user.id)
    )
    if not others:
        raise bad_request("the last root admin cannot be demoted or disabled", param, "root_required")


def update_user(user: User, changes: dict[str, Any], actor: User | None = None) -> User:
    """Apply an admin's changes; `actor` is who asks (None: the command line)."""
    bounds.only(changes, UPDATE_FIELDS, "user")
    if "role" in changes and changes["role"] not in ROLES:
        raise bad_request(f"role must be one of {', '.join(ROLES)}", "role")
    if "status" in changes and changes["status"] not in STATUSES:
        raise bad_request("status must be active or disabled", "status")
    _keeps_a_root(user, changes, actor)
    if "role" in changes:
        user.role = changes["role"]
    if "group" in changes:
        user.group = _check_group(changes["group"])
    if "status" in changes:
        user.status = changes["status"]
    if "password" in changes:
        user.password_hash = generate_password_hash(_check_password(changes["password"]))
        user.session_epoch += 1  # a new password ends every console session
        revoke_access_token(user)  # and the access token it may have leaked with
    db.session.commit()
    return user


def change_password(user: User, current: Any, new: Any) -> None:
    """The user's own password change: the current one must match. Ends every other session."""
    if not isinstance(current, str) or not check_password_hash(user.password_hash, current):
        raise GatewayError(
            403, "The current password is wrong.", "permission_denied", "bad_credentials", "current"
        )
    update_user(user, {"password": new}, user)


def set_language(user: User, language: str) -> None:
    user.language = language
    db.session.commit()


def registration_open() -> bool:
    """Whether anyone may create an account from the console (an admin's setting; off by default)."""
    row = db.session.get(Setting, "registration")
    return bool(row is not None and row.value)


def end_sessions(user: User) -> None:
    """Logout: every console session of the user and its access token stop working."""
    user.session_epoch += 1
    revoke_access_token(user)
    db.session.commit()


@cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def authenticate(username: str, password: str) -> User | None:
    """The active user with these credentials, or None. An unknown username costs one password hash all
    the same, so the time taken does not tell which usernames exist."""
    user = None
    if len(username) <= USERNAME_MAX and "\x00" not in username and username.isprintable():
        user = db.session.scalar(db.select(User).where(User.username == username))
    if user is None or len(password) > PASSWORD_MAX:  # no valid password is longer: hash a bounded one
        check_password_hash(_dummy_hash(), password[:PASSWORD_MAX])
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    return user if user.status == "active" else None


def issue_access_token(user: User, ttl_days: float) -> str:
    """A new access token for `Authorization: Bearer`, valid `ttl_days`; it replaces the previous one."""
    token = new_token("rh-")
    user.access_token_hash = hash_secret(token)
    user.access_token_expires_at = utcnow() + dt.timedelta(days=ttl_days)
    db.session.commit()
    return token


def revoke_access_token(user: User) -> None:
    """Staged in the current transaction; the caller commits."""
    user.access_token_hash = None
    user.access_token_expires_at = None


def user_by_access_token(token: str) -> User | None:
    """The token's user while it is valid. A token without an expiry predates expiring tokens: refused."""
    user = db.session.scalar(db.select(User).where(User.access_token_hash == hash_secret(token)))
    if user is None or user.access_token_expires_at is None or user.access_token_expires_at <= utcnow():
        return None
    return user


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
