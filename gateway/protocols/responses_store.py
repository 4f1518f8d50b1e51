"""What the gateway keeps of OpenAI Responses API conversations, and the Responses protocol's hooks on it
(`prepare`, run by the relay after authentication, and `manage`, for GET, DELETE and cancel).

* `stored_responses` rows, per user, behind `previous_response_id`, `GET` and `DELETE /v1/responses/{id}`.
  A response a channel served natively only binds its id to that channel (the upstream keeps the
  conversation, so follow-ups and GET must go back there); a converted one keeps the conversation itself:
  the hub messages up to and including its answer, and the Response object GET returns. Rows expire after
  the retention (`RESPONSES_RETENTION_DAYS`, 30 by default, as OpenAI keeps responses) and are purged now
  and then, off the request's path.
* Compaction items made by the gateway (for channels that have no `/responses/compact` of their own): the
  summary travels in the client's hands, as `encrypted_content` signed with a key derived from the app's
  `SECRET_KEY` and bound to the user, so that a forged one, or another user's, is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import orjson
from flask import Flask

from gateway import upstream
from gateway.domain.models import StoredResponse, db
from gateway.neutral import Call, GatewayError, Reply, bad_request, redacted
from gateway.protocols import openai
from gateway.upstream import UpstreamRequest

if TYPE_CHECKING:
    from gateway.domain.keys import KeyInfo
    from gateway.runtime import Runtime

log = logging.getLogger("relayhouse.responses")
PURGE_EVERY_S = 600.0
EXTENSION = "relayhouse.responses"
JSON_HEADERS = [("Content-Type", "application/json")]
SEAL_PREFIX = "rhc1."
_SEAL_CONTEXT = b"relayhouse/responses/compaction/v1"
# output item ids made here embed their response's token, so an `item_reference` finds its stored response
OWN_ITEM_ID = re.compile(r"^[a-z]+_([0-9a-f]{32})_[0-9]+$")


@dataclass(slots=True)
class Stored:
    """A stored response, detached from the database session."""

    id: str
    user_id: int
    channel_id: int | None
    native: bool
    model: str
    status: str = "completed"
    messages: list[dict[str, Any]] | None = None  # converted: the conversation, hub messages
    response: dict[str, Any] | None = None  # converted: the Response object


class ResponseStore:
    """The `stored_responses` table, for one app."""

    def __init__(self, app: Flask, retention_days: float) -> None:
        self.app = app
        self.retention_days = retention_days
        self._next_purge = 0.0

    @classmethod
    def of(cls, app: Flask, retention_days: float) -> ResponseStore:
        store = app.extensions.get(EXTENSION)
        if store is None:
            store = cls(app, retention_days)
            app.extensions[EXTENSION] = store
        return store

    def get(self, user_id: int, response_id: str) -> Stored | None:
        """The user's response of that id, unless it expired; another user's is as absent as a missing one."""
        now = _utcnow()
        with self.app.app_context():
            row = db.session.get(StoredResponse, response_id)
            found = None
            if (
                row is not None
                and row.user_id == user_id
                and (row.expires_at is None or row.expires_at > now)
            ):
                found = Stored(
                    row.id,
                    row.user_id,
                    row.channel_id,
                    row.native,
                    row.model,
                    row.status,
                    revive(orjson.loads(row.messages)) if row.messages else None,
                    orjson.loads(row.response) if row.response else None,
                )
            db.session.rollback()
        return found

    def get_many(self, user_id: int, response_ids: set[str]) -> list[Stored]:
        return [s for s in (self.get(user_id, i) for i in sorted(response_ids)) if s is not None]

    def save(self, stored: Stored) -> None:
        now = _utcnow()
        row = StoredResponse(
            id=stored.id,
            user_id=stored.user_id,
            channel_id=stored.channel_id,
            native=stored.native,
            model=stored.model[:128],
            status=stored.status[:16],
            created_at=now,
            expires_at=now + dt.timedelta(days=self.retention_days) if self.retention_days > 0 else None,
            messages=orjson.dumps(stored.messages).decode() if stored.messages is not None else None,
            response=orjson.dumps(stored.response).decode() if stored.response is not None else "",
        )
        with self.app.app_context():
            try:
                db.session.merge(row)
                db.session.commit()
            except Exception:  # a lost row costs a follow-up, never the answer already given
                db.session.rollback()
                log.exception("could not store response %s", stored.id)

    def delete(self, user_id: int, response_id: str) -> bool:
        with self.app.app_context():
            done = db.session.execute(
                db.delete(StoredResponse).where(
                    StoredResponse.id == response_id, StoredResponse.user_id == user_id
                )
            ).rowcount
            db.session.commit()
        return bool(done)

    def purge(self) -> int:
        """Delete every expired row; the number deleted."""
        with self.app.app_context():
            done = db.session.execute(
                db.delete(StoredResponse).where(StoredResponse.expires_at <= _utcnow())
            ).rowcount
            db.session.commit()
        return done or 0

    def purge_now_and_then(self) -> None:
        """Start a purge in the background when the last one is `PURGE_EVERY_S` old."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY_S
        gevent.spawn(self._purge_quietly)

    def _purge_quietly(self) -> None:
        try:
            self.purge()
        except Exception:
            log.exception("could not purge expired responses")


def own_item_id(prefix: str, token: str, number: int) -> str:
    """The id of a converted response's output item (`resp_<token>`'s), as `OWN_ITEM_ID` reads it back."""
    return f"{prefix}_{token}_{number}"


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A request's `input` as items: a bare string is one user message."""
    data = body.get("input")
    if isinstance(data, str):
        return [{"type": "message", "role": "user", "content": data}]
    return [item for item in data or () if isinstance(item, dict)]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the columns hold naive UTC


def revive(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hub messages read back from JSON: their signatures are `(origin, value)` tuples again."""
    for message in messages:
        for block in message.get("thinking_blocks") or ():
            if isinstance(block.get("signature"), list):
                block["signature"] = tuple(block["signature"])
        for call in message.get("tool_calls") or ():
            if isinstance(call.get("signature"), list):
                call["signature"] = tuple(call["signature"])
    return messages


# -- the protocol's state hooks ----------------------------------------------------------------------
@dataclass(slots=True)
class _Keeper:
    """Stores a finished answer for one user (set by `prepare` when the request has `store` on)."""

    store: ResponseStore
    user_id: int

    def converted(self, call: Call, response: dict[str, Any], message: dict[str, Any]) -> None:
        kept = {
            k: v
            for k, v in message.items()
            if k in ("role", "content", "reasoning_content", "thinking_blocks", "tool_calls")
        }
        conversation = [*call.extra.get("conversation", ()), kept]
        self.store.save(
            Stored(
                response["id"],
                self.user_id,
                call.served_by,
                False,
                call.model,
                response["status"],
                conversation,
                response,
            )
        )

    def native(self, call: Call, response: dict[str, Any]) -> None:
        if isinstance(response.get("id"), str) and response.get("store") is not False:
            status = response.get("status") if isinstance(response.get("status"), str) else "completed"
            self.store.save(Stored(response["id"], self.user_id, call.served_by, True, call.model, status))


def _store(rt: Runtime) -> ResponseStore:
    return ResponseStore.of(rt.app, rt.settings.responses_retention_days)


def prepare(rt: Runtime, key: KeyInfo, call: Call) -> None:
    """After authentication: resolve `previous_response_id` (a native one pins its channel; a converted one
    brings its conversation), this gateway's compaction items and item references, and arrange for the
    answer to be stored."""
    store = _store(rt)
    store.purge_now_and_then()
    call.extra["user_id"] = key.user_id
    call.extra["seal_key"] = seal_key(rt.app.config["SECRET_KEY"])
    previous = call.body.get("previous_response_id")
    if previous:
        stored = store.get(key.user_id, previous)
        if stored is None:
            raise GatewayError(
                404,
                f"Previous response with id '{previous}' not found.",
                "invalid_request_error",
                "previous_response_not_found",
                "previous_response_id",
            )
        if stored.native:
            call.pin_channel = stored.channel_id
        else:
            call.extra["history"] = stored.messages or []
    _resolve_items(store, key.user_id, call)
    if call.endpoint == "responses" and call.body.get("store") is not False:
        call.extra["keep"] = _Keeper(store, key.user_id)


def _resolve_items(store: ResponseStore, user_id: int, call: Call) -> None:
    summaries: dict[str, str] = {}
    wanted: set[str] = set()
    for item in input_items(call.body):
        secret = item.get("encrypted_content")
        if item.get("type") == "compaction" and is_sealed(secret):
            summary = unseal(call.extra["seal_key"], user_id, secret)
            if summary is None:
                raise bad_request(
                    "The compaction item's encrypted_content is not valid.",
                    "input",
                    "invalid_encrypted_content",
                )
            summaries[secret] = summary
        elif item.get("type") == "item_reference" and (found := OWN_ITEM_ID.match(str(item.get("id")))):
            wanted.add("resp_" + found.group(1))
    references: dict[str, dict[str, Any]] = {}
    for stored in store.get_many(user_id, wanted):
        for output in (stored.response or {}).get("output") or ():
            if isinstance(output, dict) and output.get("id"):
                references[output["id"]] = output
    call.extra["summaries"], call.extra["references"] = summaries, references


def manage(rt: Runtime, key: KeyInfo, method: str, response_id: str, action: str | None = None) -> Reply:
    """GET and DELETE `/v1/responses/{id}`, POST `/v1/responses/{id}/cancel`: a native response at the channel
    that made it, a converted one from the store. Another user's response is as absent as a missing one."""
    store = _store(rt)
    stored = store.get(key.user_id, response_id)
    if stored is None:
        return openai.render_error(
            GatewayError(
                404,
                f"Response with id '{response_id}' not found.",
                "invalid_request_error",
                None,
                "response_id",
            )
        )
    if stored.native:
        return _manage_native(rt, store, stored, method, action)
    if action == "cancel":
        return openai.render_error(
            bad_request(
                "Only responses created with background=true can be cancelled; this one is "
                + stored.status
                + "."
            )
        )
    if action:
        return openai.render_error(
            GatewayError(404, f"Unknown response action '{action}'.", "invalid_request_error")
        )
    if method == "DELETE":
        store.delete(key.user_id, response_id)
        return Reply(
            200,
            list(JSON_HEADERS),
            orjson.dumps({"id": response_id, "object": "response", "deleted": True}),
        )
    return Reply(200, list(JSON_HEADERS), orjson.dumps(stored.response or {}))


def _manage_native(
    rt: Runtime, store: ResponseStore, stored: Stored, method: str, action: str | None
) -> Reply:
    channel = rt.catalog.snapshot.channels.get(stored.channel_id or 0)
    key = rt.router.pick_key(channel) if channel is not None else None
    if channel is None or key is None:
        return openai.render_error(
            GatewayError(
                503,
                "The channel that holds this response cannot be reached now.",
                "server_error",
                "channel_unavailable",
                retry_after=1,
            )
        )
    path = f"/responses/{stored.id}" + (f"/{action}" if action else "")
    url = openai.endpoint_url(channel, path, channel.upstream_model(stored.model))
    request = UpstreamRequest(
        method, url, {**openai.auth_headers(channel, key), "Accept": "application/json"}, b""
    )
    try:
        answer = upstream.send(rt.pools, request, channel.timeout_s or rt.settings.default_timeout_s)
        body = upstream.read_body(answer)
    except GatewayError as err:
        return openai.render_error(redacted(err, key.secret))
    if answer.status_code >= 400:
        return openai.render_error(
            redacted(openai.map_error(answer.status_code, body, answer.headers), key.secret)
        )
    if method == "DELETE" and not action:
        store.delete(stored.user_id, stored.id)
    return Reply(answer.status_code, list(JSON_HEADERS), body)


# -- compaction items ----------------------------------------------------------------------------------
def seal_key(secret_key: str | bytes) -> bytes:
    """The key compaction items are signed with, derived from the app's SECRET_KEY (never the key itself)."""
    secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(secret, _SEAL_CONTEXT, hashlib.sha256).digest()


def seal(key: bytes, user_id: int, summary: str) -> str:
    payload = _b64(orjson.dumps({"u": user_id, "s": summary, "t": int(time.time())}))
    return f"{SEAL_PREFIX}{payload}.{_b64(_mac(key, payload))}"


def is_sealed(text: Any) -> bool:
    return isinstance(text, str) and text.startswith(SEAL_PREFIX)


def unseal(key: bytes, user_id: int, text: str) -> str | None:
    """The summary a sealed compaction item stands for; None when it was not made by this gateway for this
    user (a forgery, an altered one, another user's)."""
    payload, _, mac = text[len(SEAL_PREFIX) :].partition(".")
    try:
        if not hmac.compare_digest(_unb64(mac), _mac(key, payload)):
            return None
        data = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("u") != user_id or not isinstance(data.get("s"), str):
        return None
    return data["s"]


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
