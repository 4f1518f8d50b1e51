"""The management API over real HTTP, as an admin, a user or a browser sees it: logins and sessions, users,
keys, channels, prices, wallets, redemption codes and usage logs. Every answer is checked against the
schema that /api/openapi.json documents for its status, and every route must be documented there."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openai
import pytest

from app import create_app
from gateway import __version__
from gateway.frontends import v1
from tests.conftest import Gateway, Reply, http
from tests.fake_upstream import FakeUpstream

PASSWORD = "correct-horse-battery"
CHAT = [{"role": "user", "content": "hi"}]
TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
}


# -- the OpenAPI document as a contract -------------------------------------------------------------
def resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def conforms(spec: dict, schema: dict, value: Any, where: str) -> None:
    """A small JSON Schema check: type, enum, const, required, additionalProperties, properties, items."""
    schema = resolve(spec, schema)
    if "type" in schema:
        kinds = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        assert any(
            isinstance(value, TYPES[k]) and not (k in ("integer", "number") and isinstance(value, bool))
            for k in kinds
        ), f"{where}: {value!r} is not of type {kinds}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} is not one of {schema['enum']}"
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} is not {schema['const']!r}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        missing = set(schema.get("required", ())) - set(value)
        assert not missing, f"{where}: missing documented fields {sorted(missing)}"
        extra = schema.get("additionalProperties", True)
        if extra is False:
            assert set(value) <= set(props), f"{where}: undocumented fields {sorted(set(value) - set(props))}"
        for name, item in value.items():
            if name in props:
                conforms(spec, props[name], item, f"{where}.{name}")
            elif isinstance(extra, dict):
                conforms(spec, extra, item, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            conforms(spec, schema["items"], item, f"{where}[{index}]")


def operation(spec: dict, method: str, path: str) -> dict:
    for template, operations in spec["paths"].items():
        pattern = re.sub(r"\{(\w+)\}", lambda m: ".+" if m[1] == "model" else "[^/]+", template)
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def check_answer(spec: dict, method: str, path: str, reply: Reply) -> None:
    path = urllib.parse.urlsplit(path).path
    documented = operation(spec, method, path)["responses"]
    assert str(reply.status) in documented, (
        f"{method} {path} answered {reply.status}, which is not documented: {reply.body}"
    )
    content = resolve(spec, documented[str(reply.status)])["content"]["application/json"]
    conforms(spec, content["schema"], reply.body, f"{method} {path} {reply.status}")


@dataclass
class Api:
    """The management API as one caller sees it (`auth` holds its headers)."""

    gateway: Gateway
    spec: dict
    auth: dict[str, str]

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        url = self.gateway.url + "/api" + path
        reply = http(method, url, body, {**self.auth, **(headers or {})}, raw)
        check_answer(self.spec, method, "/api" + path, reply)
        return reply

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        reply = self(method, path, body)
        assert reply.status == status, (method, path, reply.status, reply.body)
        return reply.body

    def error(self, method: str, path: str, body: Any = None, status: int = 400) -> dict:
        reply = self(method, path, body)
        assert reply.status == status, (method, path, reply.status, reply.body)
        return reply.body["error"]

    def as_(self, auth: dict[str, str]) -> Api:
        return replace(self, auth=auth)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"session={value}"}


def session_cookie(reply: Reply) -> str:
    match = re.match(r"session=([^;]*)", reply.headers.get("set-cookie", ""))
    assert match, reply.headers
    return match[1]


@pytest.fixture
def admin(gateway: Gateway) -> Api:
    spec = http("GET", gateway.url + "/api/openapi.json").body
    return Api(gateway, spec, bearer(gateway.admin_token))


def new_user(admin: Api, **fields: Any) -> dict:
    body = {"username": "api-" + secrets.token_hex(4), "password": PASSWORD, **fields}
    return admin.ok("POST", "/users", body, 201)


def login(admin: Api, user: dict) -> Api:
    reply = admin.as_({})("POST", "/auth/login", {"username": user["username"], "password": PASSWORD})
    assert reply.status == 200, reply.body
    return admin.as_(cookie(session_cookie(reply)))


def as_user(admin: Api, user: dict) -> Api:
    """The user behind an access token of their own, as a script would use the API. The password is set
    first: users made by the conftest helpers have random ones."""
    admin.ok("PATCH", f"/users/{user['id']}", {"password": PASSWORD})
    token = login(admin, user).ok("POST", "/auth/token", {})["token"]
    return admin.as_(bearer(token))


def chat(gateway: Gateway, key: dict, model: str) -> str:
    response = gateway.client(key).chat.completions.with_raw_response.create(model=model, messages=CHAT)
    assert response.parse().choices[0].message.content
    return response.headers["x-request-id"]


# -- the document -----------------------------------------------------------------------------------
def test_every_api_route_is_documented(tmp_path: Path) -> None:
    app = create_app({"instance_dir": str(tmp_path), "database_url": f"sqlite:///{tmp_path}/x.db"})
    try:
        served = {
            (method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
            for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/api/")
            for method in rule.methods - {"HEAD", "OPTIONS"}
        }
        spec = app.test_client().get("/api/openapi.json").get_json()
    finally:
        app.extensions["relayhouse"].stop()
    documented = {(method, path) for path, operations in spec["paths"].items() for method in operations}
    relay_documented = {(method, path) for method, path in documented if not path.startswith("/api/")}
    documented -= relay_documented
    assert len(served) > 30
    assert served - documented == set(), "routes missing from /api/openapi.json"
    assert documented - served == set(), "documented routes that do not exist"
    # the relay's routes: RelayRoutes' endpoints and Gemini actions, and Flask's, less the aliases and the
    # routes that only say they are not supported
    relay_served = {("post", path) for path in v1.ENDPOINTS}
    relay_served |= {("post", f"/v1beta/models/{{model}}:{action}") for action in v1.GEMINI_ACTIONS}
    relay_served |= {
        (method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/v1/", "/v1beta/", "/dashboard/"))
        and not rule.rule.startswith("/v1/dashboard/")
        and not rule.endpoint.startswith("v1.not_implemented")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert relay_served == relay_documented


def test_openapi_document_is_public_and_complete(admin: Api) -> None:
    reply = http("GET", admin.gateway.url + "/api/openapi.json")
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/json")
    spec = reply.body
    assert spec["openapi"] == "3.1.0"
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["cookieAuth"]["in"] == "cookie" and schemes["cookieAuth"]["name"] == "session"
    assert spec["servers"] == [{"url": "/", "description": "This gateway"}]  # relative: this gateway
    public, operation_ids = set(), []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            assert op["summary"] and op["responses"], (method, path)
            assert re.fullmatch(r"(get|post|put|patch|delete)[A-Z][A-Za-z0-9]*", op["operationId"]), op
            operation_ids.append(op["operationId"])
            if op["security"] == []:
                public.add(f"{method.upper()} {path}")
            elif not path.startswith("/api/"):  # the relay's: an API key in any protocol's header
                assert op["tags"][0].startswith("relay-") and {"bearerKey": []} in op["security"], path
            else:
                assert op["security"] == [{"bearerAuth": []}, {"cookieAuth": []}], (method, path)
                assert "401" in op["responses"], (method, path)
            for name in re.findall(r"\{(\w+)\}", path):
                assert any(p["in"] == "path" and p["name"] == name for p in op["parameters"]), (path, name)
    assert public == {
        "GET /api/status",
        "GET /api/openapi.json",
        "POST /api/auth/login",
        "POST /api/auth/logout",
    }
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    assert spec["paths"]["/api/users/{user_id}/wallet"]["post"]["operationId"] == "postUsersUserIdWallet"
    log_filters = {p["name"] for p in spec["paths"]["/api/logs"]["get"]["parameters"]}
    assert log_filters == {
        "user_id",
        "key_id",
        "model",
        "channel_id",
        "status",
        "since",
        "until",
        "page",
        "per_page",
    }

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in refs(v)]
        return [r for v in node for r in refs(v)] if isinstance(node, list) else []

    for target in refs(spec):
        resolve(spec, {"$ref": target})  # raises KeyError when the target is missing


# -- status, logins, sessions and access tokens ------------------------------------------------------
def test_status_is_public(admin: Api, upstream: FakeUpstream) -> None:
    anonymous = admin.as_({})
    before = anonymous.ok("GET", "/status")
    assert before["status"] == "ok" and before["database"] == "ok"
    assert before["version"] == __version__
    started = dt.datetime.fromisoformat(before["started_at"].replace("Z", "+00:00"))
    assert started <= dt.datetime.now(dt.UTC) and before["uptime_seconds"] >= 0
    counts = before["channels"]
    assert counts["total"] >= counts["enabled"] + counts["auto_disabled"]
    admin.gateway.channel(upstream, ["m-" + secrets.token_hex(4)])
    assert anonymous.ok("GET", "/status")["channels"]["total"] == counts["total"] + 1


def test_login_sets_a_session_cookie_and_logout_ends_it(admin: Api) -> None:
    user = new_user(admin)
    anonymous = admin.as_({})
    reply = anonymous("POST", "/auth/login", {"username": user["username"], "password": PASSWORD})
    assert reply.status == 200 and reply.body == user
    set_cookie = reply.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "SameSite=Lax" in set_cookie
    browser = anonymous.as_(cookie(session_cookie(reply)))
    assert browser.ok("GET", "/auth/me")["username"] == user["username"]

    # a cross-site form cannot send JSON: the cookie alone does not let it change anything
    form = browser(
        "POST", "/keys", raw=b"name=csrf", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status == 415 and form.body["error"]["code"] == "json_required"
    text = browser("POST", "/auth/token", raw=b"{}", headers={"Content-Type": "text/plain"})
    assert text.status == 415
    assert admin.ok("GET", f"/keys?user_id={user['id']}")["data"] == []
    key = browser.ok("POST", "/keys", {"name": "from the console"}, 201)
    assert browser.ok("DELETE", f"/keys/{key['id']}") == {"id": key["id"], "deleted": True}

    out = browser("POST", "/auth/logout", {})
    assert out.status == 200 and out.body == {"ok": True}
    cleared = out.headers["set-cookie"]
    assert cleared.startswith("session=;") and ("Max-Age=0" in cleared or "1970" in cleared)
    # the browser now holds no session
    assert anonymous.error("GET", "/auth/me", status=401)["code"] == "unauthenticated"


def test_logout_revokes_the_session_on_the_server(admin: Api) -> None:
    """Logout must end the session itself, not only ask the browser to forget the cookie (OWASP ASVS
    3.3.1): a copied cookie must not keep working for the 31 days of its lifetime."""
    browser = login(admin, new_user(admin))
    assert browser.ok("POST", "/auth/logout", {}) == {"ok": True}
    replayed = browser("GET", "/auth/me")
    assert replayed.status == 401, "the session cookie still works after logout"


def test_wrong_password_or_disabled_account_cannot_log_in(admin: Api) -> None:
    user = new_user(admin)
    anonymous = admin.as_({})
    wrong = anonymous("POST", "/auth/login", {"username": user["username"], "password": "not-the-password"})
    assert wrong.status == 401 and wrong.body["error"]["code"] == "bad_credentials"
    assert "session=" not in wrong.headers.get("set-cookie", "")
    nobody = anonymous(
        "POST", "/auth/login", {"username": "nobody-" + secrets.token_hex(4), "password": PASSWORD}
    )
    assert nobody.status == 401
    form = anonymous("POST", "/auth/login", raw=b"username=x&password=y")
    assert form.status == 415 and form.body["error"]["code"] == "json_required"

    browser = login(admin, user)
    admin.ok("PATCH", f"/users/{user['id']}", {"status": "disabled"})
    assert browser("GET", "/auth/me").status == 401
    assert (
        anonymous("POST", "/auth/login", {"username": user["username"], "password": PASSWORD}).status == 401
    )


def test_access_token_acts_as_its_user(admin: Api, upstream: FakeUpstream) -> None:
    user = new_user(admin)
    first = login(admin, user).ok("POST", "/auth/token", {})["token"]
    assert first.startswith("rh-")
    script = admin.as_(bearer(first))
    assert script.ok("GET", "/auth/me")["id"] == user["id"]
    assert script.ok("GET", f"/users/{user['id']}")["username"] == user["username"]
    assert script.error("GET", "/users", status=403)["code"] == "admin_required"
    channel = {"name": "x", "base_url": upstream.base_url, "keys": ["sk-x"], "models": ["x"]}
    assert script.error("POST", "/channels", channel, status=403)["code"] == "admin_required"
    assert script.error("PUT", "/prices/gpt-x", {"input_per_mtok_usd": 0}, status=403)
    assert script.error("POST", "/redemptions", {"amount_usd": 1}, status=403)
    assert script.error("POST", f"/users/{user['id']}/wallet", {"amount_usd": 100}, status=403)
    assert script.error("GET", "/settings", status=403)

    second = script.ok("POST", "/auth/token")["token"]  # a bearer caller sends no body at all
    assert admin.as_(bearer(second)).ok("GET", "/auth/me")["id"] == user["id"]
    assert script("GET", "/auth/me").status == 401, "a new token replaces the old one"
    assert admin.as_(bearer("rh-" + secrets.token_urlsafe(32)))("GET", "/auth/me").status == 401
    assert admin.as_({})("GET", "/keys").status == 401
    assert admin.ok("GET", "/auth/me")["role"] == "root"  # RELAYHOUSE_ADMIN_TOKEN acts as the root admin


def test_only_the_root_admin_grants_or_changes_root(admin: Api) -> None:
    deputy = as_user(admin, new_user(admin, role="admin"))
    assert deputy.ok("GET", "/users")["data"]
    assert new_user(deputy)["role"] == "user"
    body = {"username": "r-" + secrets.token_hex(4), "password": PASSWORD, "role": "root"}
    assert deputy.error("POST", "/users", body, status=403)["code"] == "root_required"
    root = next(u for u in admin.ok("GET", "/users")["data"] if u["role"] == "root")
    assert deputy.error("PATCH", f"/users/{root['id']}", {"status": "disabled"}, status=403)
    assert admin.ok("GET", f"/users/{root['id']}")["status"] == "active"


def test_the_root_rules_name_the_role_and_change_nothing(admin: Api) -> None:
    deputy = as_user(admin, new_user(admin, role="admin"))
    user = new_user(admin)
    raised = deputy.error("PATCH", f"/users/{user['id']}", {"role": "root"}, status=403)
    assert raised == {
        "message": "Only the root admin can grant the root role.",
        "type": "permission_denied",
        "param": "role",
        "code": "root_required",
    }
    assert deputy.ok("PATCH", f"/users/{user['id']}", {"role": "admin"})["role"] == "admin"
    root = next(u for u in admin.ok("GET", "/users")["data"] if u["role"] == "root")
    refused = deputy.error("PATCH", f"/users/{root['id']}", {"group": "vip"}, status=403)
    assert refused["message"] == "Only the root admin can change the root admin."
    assert admin.ok("GET", f"/users/{root['id']}")["group"] == "default"
    assert admin.ok("GET", f"/users/{user['id']}")["role"] == "admin"


# -- users ------------------------------------------------------------------------------------------
def test_users_create_list_change(admin: Api) -> None:
    user = new_user(admin, group="vip")
    assert user["role"] == "user" and user["group"] == "vip" and user["status"] == "active"
    assert user["balance_micro_usd"] == 0 and isinstance(user["id"], int)
    again = {"username": user["username"], "password": PASSWORD}
    conflict = admin.error("POST", "/users", again, status=409)
    assert conflict["code"] == "conflict" and user["username"] in conflict["message"]
    short = {"username": "api-" + secrets.token_hex(4), "password": "short"}
    assert admin.error("POST", "/users", short)["param"] == "password"
    assert admin.error("POST", "/users", {"password": PASSWORD})["param"] == "username"
    listed = admin.ok("GET", "/users")["data"]
    assert [u for u in listed if u["id"] == user["id"]] == [user]
    changed = admin.ok("PATCH", f"/users/{user['id']}", {"group": "default", "role": "admin"})
    assert changed["group"] == "default" and changed["role"] == "admin"
    assert admin.error("PATCH", f"/users/{user['id']}", {"status": "gone"})["param"] == "status"
    assert admin.error("GET", "/users/99999999", status=404)["code"] == "not_found"
    assert admin.error("PATCH", "/users/99999999", {"group": "x"}, status=404)


def test_disabled_user_keys_are_refused_until_enabled(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    model, user, key = gateway.setup_model(upstream)
    chat(gateway, key, model)
    assert admin.ok("PATCH", f"/users/{user['id']}", {"status": "disabled"})["status"] == "disabled"
    with pytest.raises(openai.PermissionDeniedError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=CHAT)
    assert caught.value.code == "user_disabled"
    admin.ok("PATCH", f"/users/{user['id']}", {"status": "active"})
    chat(gateway, key, model)


# -- API keys ---------------------------------------------------------------------------------------
def test_key_is_shown_in_full_once(admin: Api) -> None:
    user = new_user(admin)
    me = as_user(admin, user)
    created = me("POST", "/keys", {"name": "laptop", "models": ["gpt-x"], "requests_per_minute": 60})
    assert created.status == 201
    key = created.body
    secret = key["key"]
    assert secret.startswith("sk-") and len(secret) == 51
    assert key["prefix"] == secret[:7] + "..." + secret[-4:]
    assert key["user_id"] == user["id"] and key["name"] == "laptop" and key["status"] == "active"
    assert key["models"] == ["gpt-x"] and key["requests_per_minute"] == 60 and key["expires_at"] is None
    for reply in (
        me("GET", "/keys"),
        me("GET", f"/keys/{key['id']}"),
        me("PATCH", f"/keys/{key['id']}", {"name": "old laptop"}),
        admin("GET", f"/keys?user_id={user['id']}"),
        admin("GET", "/keys"),
    ):
        assert reply.status == 200 and secret.encode() not in reply.raw
        assert secret[3:20].encode() not in reply.raw
    listed = me.ok("GET", "/keys")["data"]
    assert [k["prefix"] for k in listed] == [key["prefix"]] and "key" not in listed[0]
    assert me.error("POST", "/keys", {"requests_per_minute": 0})["param"] == "requests_per_minute"
    assert me.error("POST", "/keys", {"expires_at": "tomorrow"})["param"] == "expires_at"
    assert me.error("POST", "/keys", {"allowed_ips": ["not-an-ip"]})["param"] == "allowed_ips"
    assert me.error("GET", "/keys/99999999", status=404)["code"] == "not_found"


def test_disabled_and_deleted_keys_are_refused(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    model, user, key = gateway.setup_model(upstream)
    chat(gateway, key, model)
    # sent the way `curl -d` sends it, as a form type: a script's Bearer request is read as JSON all the same
    curl_like = {"Content-Type": "application/x-www-form-urlencoded"}
    disabled = admin("PATCH", f"/keys/{key['id']}", raw=b'{"status": "disabled"}', headers=curl_like)
    assert disabled.status == 200 and disabled.body["status"] == "disabled"
    with pytest.raises(openai.AuthenticationError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=CHAT)
    assert caught.value.code == "key_disabled"
    admin.ok("PATCH", f"/keys/{key['id']}", {"status": "active"})
    chat(gateway, key, model)
    assert admin.ok("DELETE", f"/keys/{key['id']}") == {"id": key["id"], "deleted": True}
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key).chat.completions.create(model=model, messages=CHAT)
    assert admin.error("GET", f"/keys/{key['id']}", status=404)
    assert admin.error("DELETE", f"/keys/{key['id']}", status=404)


def test_an_admin_deletes_any_users_key_and_a_user_only_their_own(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    model, alice, key = gateway.setup_model(upstream)
    bob = as_user(admin, new_user(admin))
    assert bob.error("DELETE", f"/keys/{key['id']}", status=404)["code"] == "not_found"
    chat(gateway, key, model)  # still works
    deputy = as_user(admin, new_user(admin, role="admin"))
    assert deputy.ok("DELETE", f"/keys/{key['id']}") == {"id": key["id"], "deleted": True}
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key).chat.completions.create(model=model, messages=CHAT)
    assert admin.ok("GET", f"/keys?user_id={alice['id']}")["data"] == []
    own = bob.ok("POST", "/keys", {"name": "mine"}, 201)
    assert bob.ok("DELETE", f"/keys/{own['id']}")["deleted"] is True
    assert bob.ok("GET", "/keys")["data"] == []


def test_expired_key_is_refused(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    model, user, _ = gateway.setup_model(upstream)
    expired = gateway.key(user, expires_at="2020-01-01T00:00:00Z")
    assert expired["expires_at"] == "2020-01-01T00:00:00Z"
    with pytest.raises(openai.AuthenticationError) as caught:
        gateway.client(expired).chat.completions.create(model=model, messages=CHAT)
    assert caught.value.code == "key_expired"
    later = gateway.key(user, expires_at=int(time.time()) + 3600)
    chat(gateway, later, model)
    admin.ok("PATCH", f"/keys/{later['id']}", {"expires_at": "2001-02-03T04:05:06+02:00"})
    assert admin.ok("GET", f"/keys/{later['id']}")["expires_at"] == "2001-02-03T02:05:06Z"
    with pytest.raises(openai.AuthenticationError):
        gateway.client(later).chat.completions.create(model=model, messages=CHAT)


def test_allowed_ips(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    model, user, _ = gateway.setup_model(upstream)
    key = gateway.key(user, allowed_ips=["10.9.9.9/32"])  # the tests connect from 127.0.0.1
    with pytest.raises(openai.PermissionDeniedError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=CHAT)
    assert caught.value.code == "ip_not_allowed"
    assert admin.ok("PATCH", f"/keys/{key['id']}", {"allowed_ips": ["127.0.0.1"]})["allowed_ips"] == [
        "127.0.0.1"
    ]
    chat(gateway, key, model)
    admin.ok("PATCH", f"/keys/{key['id']}", {"allowed_ips": None})
    chat(gateway, key, model)


# -- one user cannot see or touch another's things ---------------------------------------------------
def test_users_see_only_their_own_keys_logs_and_wallet(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    model, alice, alice_key = gateway.setup_model(upstream)
    bob = gateway.user(balance_usd=3)
    bob_key = gateway.key(bob)
    alice_request, bob_request = chat(gateway, alice_key, model), chat(gateway, bob_key, model)
    gateway.logs_of(alice, 1)
    gateway.logs_of(bob, 1)
    me = as_user(admin, alice)

    for method, body in (("GET", None), ("PATCH", {"name": "mine now"}), ("DELETE", None)):
        assert me.error(method, f"/keys/{bob_key['id']}", body, status=404)["code"] == "not_found"
    assert admin.ok("GET", f"/keys/{bob_key['id']}")["name"] == "k"
    chat(gateway, bob_key, model)
    assert {k["user_id"] for k in me.ok("GET", "/keys")["data"]} == {alice["id"]}
    assert {k["user_id"] for k in me.ok("GET", f"/keys?user_id={bob['id']}")["data"]} == {alice["id"]}
    assert me.error("POST", "/keys", {"name": "sneaky", "user_id": bob["id"]}, status=404)
    assert admin.ok("GET", f"/keys?user_id={bob['id']}")["data"][0]["id"] == bob_key["id"]

    mine = me.ok("GET", "/logs?per_page=500")
    assert {r["user_id"] for r in mine["data"]} == {alice["id"]} and mine["total"] == len(mine["data"])
    assert alice_request in {r["request_id"] for r in mine["data"]}
    asked_for_bob = me.ok("GET", f"/logs?user_id={bob['id']}&per_page=500")
    assert bob_request not in {r["request_id"] for r in asked_for_bob["data"]}
    assert {r["user_id"] for r in asked_for_bob["data"]} <= {alice["id"]}

    wallet = me.ok("GET", "/wallet")
    assert wallet["user_id"] == alice["id"] and wallet["balance_micro_usd"] == gateway.balance(alice)
    assert {e["kind"] for e in wallet["ledger"]} <= {"topup", "charge"}
    assert bob_request not in {e["request_id"] for e in wallet["ledger"]}
    assert me.error("GET", f"/users/{bob['id']}/wallet", status=403)
    assert me.error("GET", f"/users/{bob['id']}", status=404)


# -- channels ---------------------------------------------------------------------------------------
def test_channel_crud_never_shows_upstream_keys(admin: Api, upstream: FakeUpstream) -> None:
    secret = "sk-upstream-secret-" + secrets.token_hex(12)
    body = {
        "name": "primary",
        "base_url": upstream.base_url + "/",
        "keys": [secret],
        "models": ["m-" + secrets.token_hex(4)],
        "model_mapping": {"alias": "real-model"},
        "priority": 3,
    }
    created = admin("POST", "/channels", body)
    assert created.status == 201 and isinstance(created.body["id"], int)
    channel = created.body
    assert channel["base_url"] == upstream.base_url and channel["type"] == "openai"
    assert channel["groups"] == ["default"] and channel["priority"] == 3 and channel["weight"] == 1
    assert channel["status"] == "enabled" and channel["model_mapping"] == {"alias": "real-model"}
    assert channel["keys"] == [
        {"id": channel["keys"][0]["id"], "hint": "..." + secret[-4:], "status": "active", "status_reason": ""}
    ]
    path = f"/channels/{channel['id']}"
    replies = [created, admin("GET", "/channels"), admin("GET", path)]
    assert channel["id"] in {c["id"] for c in replies[1].body["data"]}
    assert replies[2].body == channel

    replies.append(admin("PATCH", path, {"priority": 9, "weight": 2}))
    assert replies[-1].body["priority"] == 9 and replies[-1].body["weight"] == 2
    replies.append(admin("PATCH", path, {"status": "disabled"}))
    assert replies[-1].body["status"] == "disabled"
    assert replies[-1].body["status_reason"] == "disabled by an admin"
    replies.append(admin("PATCH", path, {"status": "enabled"}))
    assert replies[-1].body["status"] == "enabled" and replies[-1].body["status_reason"] == ""
    second = "sk-upstream-other-" + secrets.token_hex(12)
    replies.append(admin("PATCH", path, {"keys": [secret, second]}))
    assert [k["hint"] for k in replies[-1].body["keys"]] == ["..." + secret[-4:], "..." + second[-4:]]
    replies.append(admin("DELETE", path))
    assert replies[-1].body == {"id": channel["id"], "deleted": True}
    for reply in replies:
        assert reply.status in (200, 201)
        assert secret.encode() not in reply.raw and second.encode() not in reply.raw
        assert secret[:-4].encode() not in reply.raw
    assert admin.error("GET", path, status=404)["code"] == "not_found"
    assert admin.error("DELETE", path, status=404)
    assert admin.error("PATCH", path, {"priority": 1}, status=404)


def test_channel_validation(admin: Api, upstream: FakeUpstream) -> None:
    good = {"name": "v", "base_url": upstream.base_url, "keys": ["sk-v"], "models": ["m-v"]}
    missing = {k: v for k, v in good.items() if k != "base_url"}
    error = admin.error("POST", "/channels", {**missing, "type": "azure"})  # azure has no default URL
    assert error["param"] == "base_url" and error["type"] == "invalid_request_error"
    defaulted = admin.ok("POST", "/channels", {**missing, "type": "anthropic"}, 201)
    assert defaulted["base_url"] == "https://api.anthropic.com" and defaulted["settings"] == {}
    admin.ok("DELETE", f"/channels/{defaulted['id']}")
    for field, value in (
        ("settings", {"responses": "sometimes"}),
        ("settings", {"colour": "blue"}),
        ("base_url", "ftp://example.com"),
        ("keys", []),
        ("models", "gpt-4o"),
        ("weight", 0),
        ("type", "carrier-pigeon"),
        ("status", "auto_disabled"),
        ("timeout_s", -1),
    ):
        assert admin.error("POST", "/channels", {**good, field: value})["param"] == field, field
    assert "JSON object" in admin.error("POST", "/channels", ["not", "an", "object"])["message"]
    channel = admin.ok("POST", "/channels", good, 201)
    assert admin.error("PATCH", f"/channels/{channel['id']}", {"priority": "high"})["param"] == "priority"
    assert admin.ok("GET", f"/channels/{channel['id']}")["priority"] == 0
    admin.ok("DELETE", f"/channels/{channel['id']}")


def test_channel_test_reports_success_and_failure(
    admin: Api, upstream: FakeUpstream, fresh_upstream: FakeUpstream
) -> None:
    gateway = admin.gateway
    model = "m-" + secrets.token_hex(4)
    healthy = gateway.channel(upstream, [model])
    result = admin.ok("POST", f"/channels/{healthy['id']}/test", {})
    assert result["ok"] is True and result["status"] == 200 and result["error"] is None
    assert result["model"] == model and isinstance(result["latency_ms"], int) and result["latency_ms"] >= 0
    assert model in {r.json.get("model") for r in list(upstream.requests) if isinstance(r.json, dict)}
    assert admin.ok("POST", f"/channels/{healthy['id']}/test", {"model": "other"})["model"] == "other"

    failing = gateway.channel(fresh_upstream, [model + "-down"])
    fresh_upstream.behave(status=500)
    result = admin.ok("POST", f"/channels/{failing['id']}/test")
    assert result["ok"] is False and result["status"] == 500 and result["error"]
    fresh_upstream.stop()
    result = admin.ok("POST", f"/channels/{failing['id']}/test")
    assert result["ok"] is False and result["error"] and isinstance(result["latency_ms"], int)
    assert admin.error("POST", "/channels/99999999/test", status=404)
    for channel in (healthy, failing):
        admin.ok("DELETE", f"/channels/{channel['id']}")


# -- prices, groups and settings --------------------------------------------------------------------
def test_prices(admin: Api) -> None:
    model = "org/m-" + secrets.token_hex(4)  # model names may hold a slash
    body = {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": "0.6", "cached_input_per_mtok_usd": 0.075}
    price = admin.ok("PUT", f"/prices/{model}", body)
    expected = {
        "model": model,
        "input_per_mtok_usd": 0.15,
        "output_per_mtok_usd": 0.6,
        "cached_input_per_mtok_usd": 0.075,
        "per_request_usd": None,
    }
    assert {k: price[k] for k in expected} == expected
    reader = as_user(admin, new_user(admin))
    listed = [p for p in reader.ok("GET", "/prices")["data"] if p["model"] == model]
    assert listed == [price]

    negative = admin.error("PUT", f"/prices/{model}", {**body, "output_per_mtok_usd": -1})
    assert negative["param"] == "output_per_mtok_usd"
    assert admin.error("PUT", f"/prices/{model}", {"input_per_mtok_usd": "cheap"})["param"]
    assert "colour" in admin.error("PUT", f"/prices/{model}", {"colour": 1})["message"]
    assert [p for p in admin.ok("GET", "/prices")["data"] if p["model"] == model] == [price]

    flat = admin.ok("PUT", f"/prices/{model}", {"per_request_usd": 0.002})
    assert flat["per_request_usd"] == 0.002 and flat["input_per_mtok_usd"] == 0  # PUT replaces the price
    assert admin.ok("DELETE", f"/prices/{model}") == {"model": model, "deleted": True}
    assert model not in {p["model"] for p in admin.ok("GET", "/prices")["data"]}
    assert admin.error("DELETE", f"/prices/{model}", status=404)


def test_groups_and_settings(admin: Api) -> None:
    name = "g-" + secrets.token_hex(4)
    assert admin.ok("PUT", f"/groups/{name}", {"multiplier": "1.25"}) == {"name": name, "multiplier": "1.25"}
    assert {"name": name, "multiplier": "1.25"} in admin.ok("GET", "/groups")["data"]
    assert admin.error("PUT", f"/groups/{name}", {"multiplier": -1})["param"] == "multiplier"
    settings = admin.ok("GET", "/settings")
    assert admin.ok("PATCH", "/settings", settings) == settings  # the same values: other tests rely on them
    assert admin.error("PATCH", "/settings", {"allow_free_models": "yes"})["param"] == "allow_free_models"
    assert admin.error("PATCH", "/settings", {"colour": "blue"})["param"] == "colour"


# -- money ------------------------------------------------------------------------------------------
def test_redemption_codes(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    created = admin.ok("POST", "/redemptions", {"amount_usd": 2.5, "count": 3}, 201)
    codes = created["codes"]
    assert len(set(codes)) == 3 and created["amount_usd"] == 2.5

    model, user, key = gateway.setup_model(upstream, balance_usd=0)
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.client(key).chat.completions.create(model=model, messages=CHAT)
    assert caught.value.status_code == 402
    me = as_user(admin, user)
    redeemed = me.ok("POST", "/wallet/redeem", {"code": codes[0]})
    assert redeemed == {"amount_micro_usd": 2_500_000, "balance_micro_usd": 2_500_000}
    entry = me.ok("GET", "/wallet")["ledger"][0]
    assert entry["kind"] == "redemption" and entry["amount_micro_usd"] == 2_500_000
    chat(gateway, key, model)  # the relay sees the new balance at once

    again = me.error("POST", "/wallet/redeem", {"code": codes[0]})
    assert again["code"] == "invalid_code" and again["param"] == "code"
    assert (
        me.error("POST", "/wallet/redeem", {"code": "rh-" + secrets.token_urlsafe(18)})["code"]
        == "invalid_code"
    )
    assert me.error("POST", "/wallet/redeem", {})["param"] == "code"
    other = as_user(admin, new_user(admin))
    assert other.ok("POST", "/wallet/redeem", {"code": codes[1]})["balance_micro_usd"] == 2_500_000
    assert admin.error("POST", "/redemptions", {"amount_usd": 0})["param"] == "amount_usd"
    assert admin.error("POST", "/redemptions", {"amount_usd": 1, "count": 1001})["param"] == "count"


def test_wallet_adjustments(admin: Api) -> None:
    user = new_user(admin)
    path = f"/users/{user['id']}/wallet"
    topup = admin.ok("POST", path, {"amount_usd": 5, "reason": "invoice 42"}, 201)
    assert topup == {"user_id": user["id"], "amount_micro_usd": 5_000_000, "balance_micro_usd": 5_000_000}
    debit = admin.ok("POST", path, {"amount_usd": "-1.25", "reason": "correction"}, 201)
    assert debit["amount_micro_usd"] == -1_250_000 and debit["balance_micro_usd"] == 3_750_000
    refund = admin.ok("POST", path + "?kind=refund", {"amount_usd": 0.000001, "reason": "rounding"}, 201)
    assert refund["balance_micro_usd"] == 3_750_001

    wallet = admin.ok("GET", path)
    assert wallet["balance_micro_usd"] == 3_750_001 and wallet["balance_usd"] == 3.750001
    assert wallet["total"] == 3
    assert [(e["kind"], e["amount_micro_usd"], e["reason"]) for e in wallet["ledger"]] == [
        ("refund", 1, "rounding"),
        ("adjustment", -1_250_000, "correction"),
        ("topup", 5_000_000, "invoice 42"),
    ]
    assert all(e["request_id"] is None for e in wallet["ledger"])
    second_page = admin.ok("GET", path + "?per_page=1&page=2")
    assert [e["kind"] for e in second_page["ledger"]] == ["adjustment"] and second_page["total"] == 3
    assert as_user(admin, user).ok("GET", "/wallet")["balance_micro_usd"] == 3_750_001

    assert admin.error("POST", path, {"amount_usd": 0, "reason": "nothing"})["param"] == "amount_usd"
    assert admin.error("POST", path, {"amount_usd": "lots"})["param"] == "amount_usd"
    assert admin.error("POST", path, {"amount_usd": 1, "kind": "gift"})["param"] == "kind"
    assert admin.error("POST", path, {"amount_usd": 1, "reason": 7})["param"] == "reason"
    assert admin.error("GET", path + "?page=first")["message"]
    assert admin.error("POST", "/users/99999999/wallet", {"amount_usd": 1}, status=404)
    assert admin.ok("GET", path)["total"] == 3


# -- usage logs -------------------------------------------------------------------------------------
def test_logs_filters_and_pages(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    model = "m-" + secrets.token_hex(4)
    channel = gateway.channel(upstream, [model])
    gateway.price(model)
    user = gateway.user()
    key, other_key = gateway.key(user), gateway.key(user)
    first, second = chat(gateway, key, model), chat(gateway, key, model)
    with pytest.raises(openai.NotFoundError):
        gateway.client(key).chat.completions.create(model="no-such-model", messages=CHAT)
    third = chat(gateway, other_key, model)
    gateway.logs_of(user, 4)

    def rows(query: str, expect_total: int | None = None) -> list[dict]:
        page = admin.ok("GET", f"/logs?user_id={user['id']}&" + query)
        if expect_total is not None:
            assert page["total"] == expect_total, (query, page)
        return page["data"]

    everything = rows("per_page=500", 4)
    by_id = {r["request_id"]: r for r in everything}
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)
    for request_id in (first, second, third):
        row = by_id[request_id]
        assert row["status"] == 200 and row["model"] == model and row["channel_id"] == channel["id"]
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["cached_tokens"] == 0
        assert isinstance(row["cost_micro_usd"], int) and row["cost_micro_usd"] > 0
        assert row["usage_source"] == "upstream" and row["error"] is None
        assert row["latency_ms"] >= 0 and row["ttft_ms"] is not None
    refused = next(r for r in everything if r["status"] == 404)
    assert refused["model"] == "no-such-model" and refused["cost_micro_usd"] == 0
    assert refused["channel_id"] is None and "no-such-model" in refused["error"]

    assert {r["request_id"] for r in rows(f"model={model}", 3)} == {first, second, third}
    assert [r["request_id"] for r in rows(f"key_id={other_key['id']}", 1)] == [third]
    assert len(rows(f"key_id={key['id']}&status=200", 2)) == 2
    assert rows("status=404", 1) == [refused]
    assert len(rows(f"channel_id={channel['id']}", 3)) == 3

    pages = [rows(f"per_page=3&page={n}", 4) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [3, 1, 0]
    assert [r["id"] for p in pages for r in p] == [r["id"] for r in everything]
    assert admin.ok("GET", f"/logs?user_id={user['id']}&per_page=1")["per_page"] == 1

    times = sorted(r["created_at"] for r in everything)
    newest = rows(urllib.parse.urlencode({"since": times[-1]}))
    assert newest and all(r["created_at"] >= times[-1] for r in newest)
    assert rows(urllib.parse.urlencode({"until": times[0]}), 0) == []
    window = {"since": times[0], "until": "2999-01-01T00:00:00+00:00"}
    assert len(rows(urllib.parse.urlencode(window), 4)) == 4
    assert rows("since=2999-01-01T00:00:00Z", 0) == []

    assert admin.error("GET", "/logs?since=yesterday")["param"] == "since"
    assert admin.error("GET", "/logs?status=ok")["param"] == "status"
    assert admin.error("GET", "/logs?per_page=many")["message"]


def test_a_users_logs_are_their_own_whatever_user_id_they_ask_for(admin: Api, upstream: FakeUpstream) -> None:
    gateway = admin.gateway
    model, alice, key = gateway.setup_model(upstream)
    mine = chat(gateway, key, model)
    gateway.logs_of(alice, 1)
    bob = new_user(admin)
    me = as_user(admin, alice)
    own = me.ok("GET", f"/logs?user_id={alice['id']}")
    assert own["total"] == 1 and [r["request_id"] for r in own["data"]] == [mine]
    assert me.ok("GET", f"/logs?user_id={bob['id']}&per_page=7") == {
        "data": [],
        "total": 0,
        "page": 1,
        "per_page": 7,
    }
    assert me.error("GET", "/logs?user_id=x")["param"] == "user_id"  # checked before it is ignored
    assert me.ok("GET", f"/logs?model={model}&status=200")["total"] == 1
    assert me.ok("GET", f"/logs?key_id={key['id']}&since=2999-01-01T00:00:00Z")["total"] == 0


def test_settings_are_checked_and_reach_new_accounts_and_the_relay(
    admin: Api, gateway: Gateway, upstream: FakeUpstream
) -> None:
    assert admin.error("PATCH", "/settings", {"retry_attempts": 0})["param"] == "retry_attempts"
    assert admin.error("PATCH", "/settings", {"public_url": "ftp://x"})["param"] == "public_url"
    assert admin.error("PATCH", "/settings", {"colour": "blue"})["param"] == "colour"
    group = "g-" + secrets.token_hex(3)
    admin.ok("PUT", f"/groups/{group}", {"multiplier": 1})
    changed = admin.ok("PATCH", "/settings", {"default_group": group, "retry_attempts": 1})
    assert changed["default_group"] == group and changed["retry_attempts"] == 1
    try:
        assert gateway.user()["group"] == group  # no group given: the admin's default
        # one attempt only: the first channel's failure is final, the second channel never asked
        model = "m-" + secrets.token_hex(4)
        failing = FakeUpstream("failing").start()
        try:
            failing.behave(status=500)
            gateway.channel(failing, [model], priority=10, groups=[group])
            gateway.channel(upstream, [model], priority=0, groups=[group])
            gateway.price(model)
            user = gateway.user()
            client = gateway.client(gateway.key(user))
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            assert caught.value.status_code == 502
        finally:
            failing.stop()
    finally:
        admin.ok("PATCH", "/settings", {"default_group": "", "retry_attempts": None})
