#!/bin/sh
# Lint, then run the whole test suite (SQLite and PostgreSQL). Extra arguments go to pytest.
extras="test" . "$(dirname "$0")/scripts/ensure-venv.sh"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
