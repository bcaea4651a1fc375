#!/usr/bin/env bash
# Open JupyterLab on notebooks/quickstart.ipynb (after scripts/setup.sh). Extra arguments go
# to jupyter lab, e.g. --no-browser. PORT defaults to 8888.
#   scripts/demo.sh --agents   opens notebooks/agents.ipynb instead: Claude Code, Codex and Gemini
#                              side by side. It installs the pinned CLIs first (scripts/clis.sh,
#                              ~760 MB, once); without Node.js the notebook uses the fake agents.
#                              With no API keys set, the agents run offline against a loopback model.
set -euo pipefail
cd "$(dirname "$0")/.."
notebook=quickstart.ipynb
if [ "${1:-}" = --agents ]; then
  shift
  notebook=agents.ipynb
  scripts/clis.sh || echo "demo: the agent CLIs could not be installed; agents.ipynb will use the fake agents" >&2
fi
cd notebooks
args=(--ServerApp.port="${PORT:-8888}" --ServerApp.ip=127.0.0.1)
[ "$(id -u)" = 0 ] && args+=(--allow-root)   # containers and CI machines often run as root
exec ../.venv/bin/jupyter lab "${args[@]}" "$@" "$notebook"
