"""Admin: channels. The list with status (and the reason when the relay disabled one), create with a type
picker whose base URL comes from the type (`CHANNEL_TYPES`), edit, test with the measured latency, enable,
disable and delete; through `gateway.domain.channels` and `gateway.probe`, as `/api/channels` does."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from console.web.admin import bp, done, form_int, form_list, form_text, is_htmx, refusal, runtime
from gateway import probe
from gateway.domain import channels
from gateway.domain.models import Channel, db
from gateway.neutral import GatewayError, bad_request

BLANK = {
    "name": "",
    "type": "openai",
    "base_url": "",
    "keys": "",
    "models": "",
    "model_mapping": "",
    "groups": "default",
    "priority": "0",
    "weight": "1",
    "timeout_s": "",
    "test_model": "",
    "responses": "",
    "api_version": "",
    "max_output_tokens": "",
}


def labels() -> dict[str, str]:
    """The form's fields by the names the domain gives them in a refusal."""
    return {
        "name": _("Name"),
        "type": _("Type"),
        "base_url": _("Base URL"),
        "keys": _("Upstream keys"),
        "models": _("Models"),
        "model_mapping": _("Model mapping"),
        "groups": _("Groups"),
        "priority": _("Priority"),
        "weight": _("Weight"),
        "timeout_s": _("Timeout (seconds)"),
        "test_model": _("Test model"),
        "settings": _("Settings"),
    }


def status_label(status: str) -> str:
    return {
        "enabled": _("Enabled"),
        "disabled": _("Disabled"),
        "auto_disabled": _("Auto-disabled"),
        "half_open": _("On trial"),
    }.get(status, status)


def _channel(channel_id: int) -> Channel:
    channel = db.session.get(Channel, channel_id)
    if channel is None:
        abort(404)
    return channel


def _values(channel: Channel) -> dict[str, str]:
    """A stored channel as the form shows it (never its keys)."""
    settings = channel.settings or {}
    return {
        "name": channel.name,
        "type": channel.type,
        "base_url": channel.base_url,
        "keys": "",
        "models": "\n".join(channel.models or []),
        "model_mapping": "\n".join(f"{k} = {v}" for k, v in (channel.model_mapping or {}).items()),
        "groups": ", ".join(channel.groups or []),
        "priority": str(channel.priority),
        "weight": str(channel.weight),
        "timeout_s": "" if channel.timeout_s is None else f"{channel.timeout_s:g}",
        "test_model": channel.test_model or "",
        "responses": str(settings.get("responses", "")),
        "api_version": str(settings.get("api_version", "")),
        "max_output_tokens": str(settings.get("max_output_tokens", "")),
    }


def _mapping() -> dict[str, str]:
    """`public = upstream`, one a line."""
    mapping = {}
    for line in request.form.get("model_mapping", "").splitlines():
        if not line.strip():
            continue
        public, sep, upstream = line.partition("=")
        if not sep or not public.strip() or not upstream.strip():
            raise bad_request("model_mapping lines read: public-name = upstream-name", "model_mapping")
        mapping[public.strip()] = upstream.strip()
    return mapping


def _timeout() -> Any:
    value = form_text("timeout_s")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return value  # refused by the domain, by name


def _fields(creating: bool) -> dict[str, Any]:
    """The form as the API's JSON body: blank base URL means the type's default (new channel) or the
    current one (edit); blank keys on an edit keep the stored keys."""
    fields: dict[str, Any] = {
        "name": form_text("name"),
        "type": form_text("type"),
        "models": form_list("models"),
        "model_mapping": _mapping(),
        "groups": form_list("groups"),
        "priority": form_int("priority", 0),
        "weight": form_int("weight", 1),
        "timeout_s": _timeout(),
        "test_model": form_text("test_model"),
    }
    settings: dict[str, Any] = {}
    if form_text("responses"):
        settings["responses"] = form_text("responses")
    if form_text("api_version"):
        settings["api_version"] = form_text("api_version")
    if form_text("max_output_tokens"):
        settings["max_output_tokens"] = form_int("max_output_tokens")
    fields["settings"] = settings
    if form_text("base_url"):
        fields["base_url"] = form_text("base_url")
    keys = [line.strip() for line in request.form.get("keys", "").splitlines() if line.strip()]
    if keys or creating:
        fields["keys"] = keys
    return fields


def _form_page(channel: Channel | None, values: dict[str, str], error: str | None = None) -> tuple[str, int]:
    page = render_template(
        "admin/channel_form.html",
        channel=channel,
        values=values,
        types=channels.CHANNEL_TYPES,
        kind=channels.CHANNEL_TYPES.get(values["type"], channels.CHANNEL_TYPES["openai"]),
        error=error,
        status_label=status_label,
    )
    return page, 400 if error else 200


def _listing() -> dict[str, Any]:
    rows = list(db.session.scalars(db.select(Channel).order_by(Channel.id)))
    return {"rows": [(c, channels.channel_keys(c.id)) for c in rows], "status_label": status_label}


@bp.get("/channels")
def channels_page() -> str:
    if is_htmx():
        return render_template("partials/admin_channels.html", **_listing())
    return render_template("admin/channels.html", **_listing())


@bp.get("/channels/type")
def channel_type() -> str:
    """The type picker's defaults (htmx swaps them in when the type changes)."""
    kind = channels.CHANNEL_TYPES.get(request.args.get("type", ""), channels.CHANNEL_TYPES["openai"])
    return render_template("partials/admin_channel_type.html", kind=kind, base_url="")


@bp.route("/channels/new", methods=["GET", "POST"])
def new_channel() -> tuple[str, int] | Response:
    values = dict(BLANK)
    if request.method == "GET":
        chosen = request.args.get("type", "")
        if chosen in channels.CHANNEL_TYPES:
            values["type"] = chosen
        return _form_page(None, values)
    values.update({k: request.form.get(k, "") for k in BLANK if k != "keys"})
    try:
        channel = channels.create_channel(_fields(creating=True), runtime().catalog.vault)
    except GatewayError as err:
        db.session.rollback()
        return _form_page(None, values, refusal(err, labels()))
    runtime().changed_catalog()
    return done(_("Channel “%(name)s” was created.", name=channel.name), "admin.channels_page")


@bp.route("/channels/<int:channel_id>", methods=["GET", "POST"])
def edit_channel(channel_id: int) -> tuple[str, int] | Response:
    channel = _channel(channel_id)
    if request.method == "GET":
        return _form_page(channel, _values(channel))
    values = {**_values(channel), **{k: request.form.get(k, "") for k in BLANK if k != "keys"}}
    try:
        channels.update_channel(channel, _fields(creating=False), runtime().catalog.vault)
    except GatewayError as err:
        db.session.rollback()
        return _form_page(_channel(channel_id), values, refusal(err, labels()))
    runtime().changed_catalog()
    return done(_("Channel “%(name)s” was saved.", name=channel.name), "admin.channels_page")


@bp.post("/channels/<int:channel_id>/status")
def channel_status(channel_id: int) -> str | Response:
    channel = _channel(channel_id)
    status = "enabled" if request.form.get("status") == "enabled" else "disabled"
    channels.update_channel(channel, {"status": status}, runtime().catalog.vault)
    runtime().changed_catalog()
    if is_htmx():
        return render_template("partials/admin_channels.html", **_listing())
    flash(_("Channel “%(name)s” is now %(status)s.", name=channel.name, status=status_label(status)))
    if request.form.get("next") == "edit":
        return redirect(url_for("admin.edit_channel", channel_id=channel_id))
    return redirect(url_for("admin.channels_page"))


@bp.post("/channels/<int:channel_id>/test")
def test_channel(channel_id: int) -> str | Response:
    channel = _channel(channel_id)
    model = form_text("model") or None
    result = probe.test_channel(runtime(), channel_id, model)
    db.session.expire_all()  # the test may have moved the channel's status
    if is_htmx():
        return render_template("partials/admin_channel_test.html", channel=channel, result=result)
    if result["ok"]:
        flash(_("Channel “%(name)s” answered in %(ms)s ms.", name=channel.name, ms=result["latency_ms"]))
    else:
        flash(_("Channel “%(name)s” failed its test: %(error)s", name=channel.name, error=result["error"]))
    return redirect(url_for("admin.channels_page"))


@bp.post("/channels/<int:channel_id>/delete")
def delete_channel(channel_id: int) -> Response:
    channel = _channel(channel_id)
    name = channel.name
    channels.delete_channel(channel)
    runtime().changed_catalog()
    return done(_("Channel “%(name)s” was deleted.", name=name), "admin.channels_page")
