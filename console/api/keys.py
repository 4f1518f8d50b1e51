"""API keys: `/api/keys`. A user sees and changes only their own keys; admins may act for anyone."""

from __future__ import annotations

from flask import jsonify

from console.api import body, bp, current_user, is_admin, not_found, query_id, require, runtime
from gateway.domain import bounds, keys
from gateway.domain.models import ApiKey, User, db
from gateway.neutral import bad_request


def _own_key(key_id: int) -> ApiKey:
    key = keys.manageable_key(current_user(), key_id)
    if key is None:
        raise not_found("key")
    return key


@bp.post("/keys")
@require()
def create_key():  # noqa: ANN201
    data = body()
    me = current_user()
    user_id = data.pop("user_id", None)
    if user_id is not None:
        user_id = bounds.integer(user_id, "user_id", *bounds.INT32)
    if user_id is None or user_id == me.id:
        user_id = me.id
    elif not is_admin(me):
        raise not_found("user")
    elif db.session.get(User, user_id) is None:
        raise bad_request("user_id names no user", "user_id")
    key, plain = keys.create_key(user_id, data)
    return jsonify({**keys.key_json(key), "key": plain}), 201


@bp.get("/keys")
@require()
def list_keys():  # noqa: ANN201
    me = current_user()
    query = db.select(ApiKey).order_by(ApiKey.id)
    wanted = query_id("user_id")
    if not is_admin(me):
        query = query.where(ApiKey.user_id == me.id)
    elif wanted is not None:
        query = query.where(ApiKey.user_id == wanted)
    return jsonify(data=[keys.key_json(k) for k in db.session.scalars(query)])


@bp.get("/keys/<int:key_id>")
@require()
def get_key(key_id: int):  # noqa: ANN201
    return jsonify(keys.key_json(_own_key(key_id)))


@bp.patch("/keys/<int:key_id>")
@require()
def update_key(key_id: int):  # noqa: ANN201
    key = keys.update_key(_own_key(key_id), body())
    runtime().changed_keys(key_id=key.id)
    return jsonify(keys.key_json(key))


@bp.delete("/keys/<int:key_id>")
@require()
def delete_key(key_id: int):  # noqa: ANN201
    if not keys.delete_key(current_user(), key_id):
        raise not_found("key")
    runtime().changed_keys(key_id=key_id)
    return jsonify(id=key_id, deleted=True)
