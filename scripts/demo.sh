#!/usr/bin/env bash
# Open JupyterLab on notebooks/quickstart.ipynb (after scripts/setup.sh). Extra arguments go
# to jupyter lab, e.g. --no-browser. PORT defaults to 8888.
set -euo pipefail
cd "$(dirname "$0")/../notebooks"
args=(--ServerApp.port="${PORT:-8888}" --ServerApp.ip=127.0.0.1)
[ "$(id -u)" = 0 ] && args+=(--allow-root)   # containers and CI machines often run as root
exec ../.venv/bin/jupyter lab "${args[@]}" "$@" quickstart.ipynb
