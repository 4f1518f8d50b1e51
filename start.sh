#!/bin/sh
# Start Relayhouse on port 3000 (PORT and the other settings in README.md come from the environment).
extras="" . "$(dirname "$0")/scripts/ensure-venv.sh"
exec .venv/bin/python app.py "$@"
