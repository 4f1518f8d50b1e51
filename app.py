"""Relayhouse: `create_app(config=None)` builds the Flask app; `python app.py` serves it with gevent."""

if __name__ == "__main__":  # gevent must patch the standard library before anything else imports it
    from gevent import monkey

    monkey.patch_all()

import errno
import logging
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import click
import gevent
import sqlalchemy.exc
from flask import Flask, Request, Response, g, has_request_context, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_migrate import Migrate, upgrade
from gevent.pywsgi import WSGIServer
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from console import web
from console.api import bp as api_bp
from console.api import signin
from gateway import __version__, workers
from gateway.config import PROJECT_ROOT, Settings, instance_secret, settings_from_env
from gateway.domain import accounts
from gateway.domain.crypto import Vault
from gateway.domain.models import User, db
from gateway.frontends.v1 import CORS_HEADERS, RelayRoutes, protocol_of
from gateway.frontends.v1 import PREFIXES as RELAY_PREFIXES
from gateway.frontends.v1 import bp as v1_bp
from gateway.neutral import GatewayError, new_request_id
from gateway.runtime import Runtime
from gateway.serving import make_server
from gateway.setup import StartupError, database_error, deployment_id, setup_lock

log = logging.getLogger("relayhouse")
LISTEN_FD = "RELAYHOUSE_LISTEN_FD"  # a worker serves the socket its supervisor bound
MIGRATIONS = str(PROJECT_ROOT / "gateway" / "migrations")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    if type(dbapi_connection).__module__ == "sqlite3":
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


class ConsoleSessions(SecureCookieSessionInterface):
    """Console sessions for everything but the relay: API-key requests never read the session cookie.

    The cookie is `Secure` when the request came over HTTPS, so a browser never sends it back in clear;
    `X-Forwarded-Proto` counts only from `TRUSTED_PROXIES`, since any client may send that header."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        path = request.environ.get("PATH_INFO", "")
        if path.startswith(RELAY_PREFIXES):
            return None  # Flask then uses a null session, and saves nothing
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        if super().get_cookie_secure(app):
            return True
        trusted = app.extensions["relayhouse"].settings.trusted_proxies
        return has_request_context() and signin.is_https(request.environ, trusted)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    settings: Settings = settings_from_env()
    if config:
        settings = settings.with_overrides(config)
    Path(settings.instance_dir).mkdir(parents=True, exist_ok=True)
    app = Flask(
        __name__, instance_path=settings.instance_dir, template_folder="templates", static_folder="static"
    )
    app.session_interface = ConsoleSessions()
    app.config.update(
        SECRET_KEY=settings.secret_key or instance_secret(settings.instance_dir, "secret_key"),
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=7 * 24 * 3600,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )
    db.init_app(app)
    Migrate(app, db, directory=MIGRATIONS)
    try:
        vault = Vault(
            settings.channel_key or instance_secret(settings.instance_dir, "channel.key", Vault.generate_key)
        )
    except ValueError:
        raise StartupError(
            "CHANNEL_KEY (or instance/channel.key) is not a valid key: it must be 32 url-safe base64-encoded "
            "bytes, as `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'` "
            "prints."
        ) from None
    rt = Runtime(app, settings, vault)
    app.extensions["relayhouse"] = rt

    with app.app_context():
        with setup_lock(settings.database_url):  # one process at a time migrates and creates root
            upgrade(directory=MIGRATIONS)
            generated = accounts.ensure_root(settings.admin_password)
            deployment = deployment_id()
        if generated:
            print(
                f"Relayhouse created the root admin: username 'root', password '{generated}' "
                "(shown once; change it with: flask --app app reset-password root)",
                flush=True,
            )
        try:
            rt.catalog.reload()
        except ValueError as exc:  # the stored upstream keys were encrypted with another key
            raise StartupError(
                f"{exc}. Every process on this database needs the same key: copy instance/channel.key "
                "from the first one, or set CHANNEL_KEY to it on all of them."
            ) from None

    app.wsgi_app = RelayRoutes(rt, app.wsgi_app)  # type: ignore[method-assign]
    app.register_blueprint(v1_bp)
    app.register_blueprint(api_bp)
    web.init_app(app, exempt=(v1_bp, api_bp))
    _wire_requests(app)
    _register_commands(app)
    rt.wallets.replayed(rt.writer.replay())  # what a killed process left in its journal, before serving
    rt.start(deployment)
    return app


def _wire_requests(app: Flask) -> None:
    @app.before_request
    def assign_request_id() -> None:
        g.request_id = new_request_id()

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if request.path.startswith(RELAY_PREFIXES):
            response.headers.extend(CORS_HEADERS)
        return response

    def render(err: GatewayError) -> Response:
        if request.path.startswith("/api/"):
            body = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
            return jsonify(body), err.status
        reply = protocol_of(request.path, request.headers).render_error(err)
        return Response(reply.body, reply.status, reply.headers)

    @app.errorhandler(GatewayError)
    def gateway_error(err: GatewayError) -> Response:
        return render(err)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        message = err.description or err.name
        if err.code == 404:
            message = f"Unknown path {request.method} {request.path}."
        code = {404: "unknown_url", 405: "method_not_allowed", 413: "request_too_large"}.get(err.code or 0)
        return render(GatewayError(err.code or 500, message, "invalid_request_error", code))

    @app.errorhandler(Exception)
    def internal_error(err: Exception) -> Response:
        log.exception(
            "unhandled error in %s %s (request %s)", request.method, request.path, g.get("request_id")
        )
        return render(
            GatewayError(
                500,
                f"Internal error; quote request id {g.get('request_id')}.",
                "server_error",
                "internal_error",
            )
        )


def _register_commands(app: Flask) -> None:
    @app.cli.command("create-admin")
    @click.argument("username")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    @click.option("--role", type=click.Choice(["admin", "root"]), default="admin")
    def create_admin(username: str, password: str, role: str) -> None:
        """Create an admin account."""
        try:
            accounts.create_user(username, password, role)
        except GatewayError as err:
            raise click.ClickException(err.message) from None
        click.echo(f"created {role} {username}")

    @app.cli.command("reset-password")
    @click.argument("username")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    def reset_password(username: str, password: str) -> None:
        """Set a new password for an account."""
        user = db.session.scalar(db.select(User).where(User.username == username))
        if user is None:
            raise click.ClickException(f"no user named {username}")
        try:
            accounts.update_user(user, {"password": password})
        except GatewayError as err:
            raise click.ClickException(err.message) from None
        click.echo(f"password of {username} changed")


def serve() -> None:
    """`python app.py`: one server process, or with `WORKERS=N` a supervisor of N of them."""
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        try:
            settings = settings_from_env()
        except ValueError as err:
            raise StartupError(f"a setting in the environment is not valid ({err}); see README.md") from None
        inherited = os.environ.get(LISTEN_FD)
        if inherited:
            listener = socket.socket(fileno=int(inherited))
        else:
            listener = listen(settings)
        if settings.workers > 1 and not inherited:
            raise SystemExit(workers.supervise(settings, listener, LISTEN_FD))
        serve_one(settings, listener)
    except StartupError as err:
        print(f"Relayhouse cannot start: {err}", file=sys.stderr, flush=True)
        raise SystemExit(workers.STARTUP_FAILED) from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        print(
            f"Relayhouse cannot start: {database_error(settings, err)}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(workers.STARTUP_FAILED) from None


def listen(settings: Settings) -> socket.socket:
    """Bind the port before anything else, so that a port in use is one clear line, not a traceback."""
    try:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        return WSGIServer.get_listener((settings.host, settings.port), family=family)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {settings.port} on {settings.host} is already in use: stop the program that holds it, "
                "or set PORT to another port."
            ) from None
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {err.strerror}.") from None


def serve_one(settings: Settings, listener: socket.socket) -> None:
    app = create_app()
    rt: Runtime = app.extensions["relayhouse"]
    server = make_server(app, settings.host, settings.port, listener=listener)

    def shutdown() -> None:
        log.info("stopping: finishing requests in flight, then flushing logs")
        server.stop(timeout=10)  # serve_forever returns once this is done

    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, gevent.spawn, shutdown)
    print(
        f"Relayhouse {__version__} listening on http://{settings.host}:{settings.port} "
        f"(process {os.getpid()}, started {time.strftime('%H:%M:%S')})",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        rt.stop()
        log.info("stopped")


if __name__ == "__main__":
    serve()
