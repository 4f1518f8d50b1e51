"""Channels: `/api/channels` (admins only). Upstream keys go in and never come out in full."""

from __future__ import annotations

from flask import jsonify

from console.api import body, bp, not_found, require, runtime
from gateway import probe
from gateway.domain import bounds, channels
from gateway.domain.models import Channel, db


def _channel(channel_id: int) -> Channel:
    channel = db.session.get(Channel, channel_id)
    if channel is None:
        raise not_found("channel")
    return channel


def _json(channel: Channel) -> dict:
    return channels.channel_json(channel, channels.channel_keys(channel.id))


@bp.post("/channels")
@require("admin")
def create_channel():  # noqa: ANN201
    channel = channels.create_channel(body(), runtime().catalog.vault)
    runtime().changed_catalog()
    return jsonify(_json(channel)), 201


@bp.get("/channels")
@require("admin")
def list_channels():  # noqa: ANN201
    rows = db.session.scalars(db.select(Channel).order_by(Channel.id))
    return jsonify(data=[_json(c) for c in rows])


@bp.get("/channels/<int:channel_id>")
@require("admin")
def get_channel(channel_id: int):  # noqa: ANN201
    return jsonify(_json(_channel(channel_id)))


@bp.patch("/channels/<int:channel_id>")
@require("admin")
def update_channel(channel_id: int):  # noqa: ANN201
    channel = channels.update_channel(_channel(channel_id), body(), runtime().catalog.vault)
    runtime().changed_catalog()
    return jsonify(_json(channel))


@bp.delete("/channels/<int:channel_id>")
@require("admin")
def delete_channel(channel_id: int):  # noqa: ANN201
    channels.delete_channel(_channel(channel_id))
    runtime().changed_catalog()
    return jsonify(id=channel_id, deleted=True)


@bp.post("/channels/<int:channel_id>/test")
@require("admin")
def test_channel(channel_id: int):  # noqa: ANN201
    _channel(channel_id)
    data = body()
    bounds.only(data, ("model",), "channel test")
    model = data.get("model")
    if model is not None:
        model = bounds.text(model, "model", channels.MODEL_MAX, 1)
    return jsonify(probe.test_channel(runtime(), channel_id, model))
