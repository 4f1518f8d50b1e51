#!/bin/sh
# Lint, then run the whole test suite (SQLite and PostgreSQL). Extra arguments go to pytest.
extras="test" . "$(dirname "$0")/scripts/ensure-venv.sh"
# The browser tests drive Debian's Chromium through Playwright (whose own browser download is out of reach).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; } \
        >/dev/null || echo "test.sh: could not install chromium; the browser tests will skip" >&2
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
