"""Tables: the SQLAlchemy models of accounts, keys, channels, prices, wallets, the ledger and usage logs.

Money is always an integer of micro-USD (1 USD = 1,000,000). Schema changes go through Alembic
(`gateway/migrations`), never `create_all`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default="user")  # user, admin, root
    group: Mapped[str] = mapped_column("group_name", String(64), default="default")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, disabled
    access_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    access_token_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # console sessions carry the epoch they began in; raising it (logout, new password) ends them all
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)  # the console's, once chosen
    balance_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiKey(db.Model):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, disabled
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    spend_limit_micro_usd: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    spent_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requests_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_month: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_concurrent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    month: Mapped[str] = mapped_column(String(7), default="")  # YYYY-MM that month_tokens counts
    month_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Channel(db.Model):
    __tablename__ = "channels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32), default="openai")
    base_url: Mapped[str] = mapped_column(String(512))
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_mapping: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    groups: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["default"])
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="enabled")  # enabled, disabled, auto_disabled
    status_reason: Mapped[str] = mapped_column(Text, default="")
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    test_model: Mapped[str] = mapped_column(String(128), default="")
    total_requests: Mapped[int] = mapped_column(BigInteger, default=0)
    total_failures: Mapped[int] = mapped_column(BigInteger, default=0)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # per-type options: `responses` (native or convert), `api_version` (azure)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ChannelKey(db.Model):
    __tablename__ = "channel_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    key_encrypted: Mapped[str] = mapped_column(Text)
    hint: Mapped[str] = mapped_column(String(16))  # last four characters, for display
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, set_aside
    status_reason: Mapped[str] = mapped_column(Text, default="")
    set_aside_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Price(db.Model):
    __tablename__ = "prices"
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    # micro-USD per one million tokens; per_request in micro-USD
    input_micro_per_mtok: Mapped[int] = mapped_column(BigInteger, default=0)
    output_micro_per_mtok: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_input_micro_per_mtok: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cache_write_micro_per_mtok: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    per_request_micro: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Group(db.Model):
    __tablename__ = "groups"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    multiplier: Mapped[str] = mapped_column(String(32), default="1")  # decimal text, exact


class Setting(db.Model):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class LedgerEntry(db.Model):
    __tablename__ = "ledger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # topup, redemption, charge, refund, adjustment
    amount_micro_usd: Mapped[int] = mapped_column(BigInteger)  # signed
    reason: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Redemption(db.Model):
    __tablename__ = "redemptions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    amount_micro_usd: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    redeemed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class UsageLog(db.Model):
    __tablename__ = "usage_logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    key_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    channel_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    endpoint: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    upstream_model: Mapped[str] = mapped_column(String(128), default="")
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    protocol: Mapped[str] = mapped_column(String(16), default="openai")  # the client's protocol
    channel_type: Mapped[str] = mapped_column(String(32), default="")  # the upstream's, by its channel
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_source: Mapped[str] = mapped_column(String(16), default="upstream")  # upstream, estimated
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    ttft_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[int] = mapped_column(Integer, default=200)
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class StoredResponse(db.Model):
    """A Responses API answer kept for `previous_response_id`, GET and DELETE. A natively served one only
    records the channel that holds it; a converted one keeps the conversation (hub messages) itself."""

    __tablename__ = "stored_responses"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    channel_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    native: Mapped[bool] = mapped_column(Boolean, default=False)
    model: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default="completed")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    messages: Mapped[str | None] = mapped_column(Text, nullable=True)
    response: Mapped[str] = mapped_column(Text, default="")


class DeadLetter(db.Model):
    """A usage record the database refused even after repair: kept whole, with the error, for an admin."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[str] = mapped_column(Text)  # the record as JSON
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
