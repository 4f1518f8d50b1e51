"""Admin: channels. The list with status (and the reason when the relay disabled one), create with a type
picker whose base URL comes from the type (`CHANNEL_TYPES`), edit, test with the measured latency, enable,
disable and delete; through `gateway.domain.channels` and `gateway.probe`, as `/api/channels` does.

Status reasons and test failures are said in the page's language from their codes; an upstream's own
words are shown as they came, quoted in `<code translate="no">` inside a translated sentence.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup, escape
from werkzeug.wrappers import Response

from console.web import locale
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


def _html(message: str, **params: object) -> Markup:
    """A translated message (from `_()` without parameters) filled in with its parameters escaped; a
    Markup parameter is kept as HTML."""
    return Markup(escape(message)) % params


def quoted(text: str) -> Markup:
    """Another server's own words, as they came: set apart, and not the page's to translate."""
    return Markup('<code class="quoted" translate="no">{}</code>').format(text)


def _own_failure(code: str | None) -> str | None:
    """The gateway's own words for a failure it names by a code."""
    return {
        "upstream_timeout": _("The upstream did not answer in time."),
        "upstream_unreachable": _("Could not reach the upstream."),
        "unsupported_endpoint": _("This channel's type cannot serve the test model's endpoint."),
        "no_keys": _("The channel has no keys."),
        "no_such_channel": _("The relay does not know this channel yet."),
    }.get(code or "")


def failure_html(upstream_status: int | None, code: str | None, message: str | None) -> Markup:
    """A failure in the page's language: what the gateway saw in its words, what the upstream said in
    its own, quoted."""
    own = _own_failure(code)
    if own is not None:
        return Markup(escape(own))
    message = message or ""
    if code == probe.KEY_REJECTED:  # the message is the gateway's: the upstream's may quote the key
        return _html(_("The upstream refused the channel's key (%(status)s)."), status=upstream_status)
    if code == "bad_upstream_response":
        return _html(_("The upstream's answer could not be read: %(error)s"), error=quoted(message))
    if code == "upstream_stream_error":
        return _html(_("The upstream reported an error in its stream: %(error)s"), error=quoted(message))
    if upstream_status:
        if not message or message == f"The upstream answered {upstream_status}.":  # it gave no words
            return _html(_("The upstream answered %(status)s."), status=upstream_status)
        return _html(
            _("The upstream answered %(status)s: %(error)s"), status=upstream_status, error=quoted(message)
        )
    return _html(_("It failed: %(error)s"), error=quoted(message))


def reason_html(stored: str) -> Markup:
    """A stored status reason in the page's language; free text stored before reasons had codes as it
    is."""
    code, p = channels.read_reason(stored)
    if code is None:
        return Markup(escape(stored))
    try:
        if code == "admin_disabled":
            return Markup(escape(_("Disabled by an admin.")))
        if code == "answered_test":
            return Markup(escape(_("Answered a test; taking a little traffic.")))
        if code in ("key_rejected", "keys_set_aside"):
            answer = {"status": p["status"], "code": quoted(str(p["code"]))}
            if code == "key_rejected":
                return _html(_("The upstream refused this key: it answered %(status)s (%(code)s)."), **answer)
            return _html(
                _("Every key was set aside; the last: the upstream answered %(status)s (%(code)s)."), **answer
            )
        last = failure_html(p["status"], p["code"], p["last"])
        if code == "failed_on_trial":
            return _html(_("Failed again while on trial. %(error)s"), error=last)
        return _html(
            _("%(failures)s of %(requests)s requests failed in %(seconds)s s. The last: %(error)s"),
            failures=locale.number(p["failures"]),
            requests=locale.number(p["requests"]),
            seconds=locale.number(p["window_s"]),
            error=last,
        )
    except KeyError:  # a parameter missing: the English text
        return Markup(escape(channels.reason_text(stored)))


def test_html(result: dict[str, Any]) -> Markup:
    """Why a channel test failed, in the page's language."""
    answered = result.get("error_code") in (probe.UPSTREAM_ANSWERED, probe.KEY_REJECTED)
    return failure_html(result["status"] if answered else None, result.get("error_code"), result["error"])


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
        reason_html=reason_html,
    )
    return page, 400 if error else 200


def _listing() -> dict[str, Any]:
    rows = list(db.session.scalars(db.select(Channel).order_by(Channel.id)))
    return {
        "rows": [(c, channels.channel_keys(c.id)) for c in rows],
        "status_label": status_label,
        "reason_html": reason_html,
    }


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
        return render_template(
            "partials/admin_channel_test.html", channel=channel, result=result, test_html=test_html
        )
    if result["ok"]:
        flash(_("Channel “%(name)s” answered in %(ms)s ms.", name=channel.name, ms=result["latency_ms"]))
    else:
        why = test_html(result)
        flash(_html(_("Channel “%(name)s” failed its test: %(error)s"), name=channel.name, error=why))
    return redirect(url_for("admin.channels_page"))


@bp.post("/channels/<int:channel_id>/delete")
def delete_channel(channel_id: int) -> Response:
    channel = _channel(channel_id)
    name = channel.name
    channels.delete_channel(channel)
    runtime().changed_catalog()
    return done(_("Channel “%(name)s” was deleted.", name=name), "admin.channels_page")
