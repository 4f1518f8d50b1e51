"""The `flask --app app` commands an operator uses: create an admin, reset a password."""

from __future__ import annotations

from pathlib import Path

from app import create_app
from gateway.domain import accounts


def test_create_admin_and_reset_password(tmp_path: Path) -> None:
    app = create_app({"instance_dir": str(tmp_path), "database_url": f"sqlite:///{tmp_path / 'cli.db'}"})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "ops", "--password", "first-password"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = accounts.authenticate("ops", "first-password")
        assert user is not None and user.role == "admin"
    assert runner.invoke(args=["create-admin", "ops", "--password", "another-one"]).exit_code != 0
    result = runner.invoke(args=["reset-password", "ops", "--password", "second-password"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert accounts.authenticate("ops", "first-password") is None
        assert accounts.authenticate("ops", "second-password") is not None
    assert runner.invoke(args=["reset-password", "nobody", "--password", "whatever-1"]).exit_code != 0
    app.extensions["relayhouse"].stop()
