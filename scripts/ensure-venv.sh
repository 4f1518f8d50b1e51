# Sourced (not run) by start.sh and test.sh: make .venv and install pyproject.toml's dependencies into it,
# again only when pyproject.toml changed. `extras` (optional) names extras to add, such as "test".
set -eu
cd "$(dirname "$0")"  # $0 is start.sh or test.sh, at the project root
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.deps-${extras:-runtime}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python - "${extras:-}" > .venv/requirements.txt <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = list(project["dependencies"])
for extra in filter(None, sys.argv[1].split(",")):
    wanted += project["optional-dependencies"][extra]
print("\n".join(wanted))
PY
    .venv/bin/python -m pip install --quiet -r .venv/requirements.txt
    touch "$stamp"
fi
