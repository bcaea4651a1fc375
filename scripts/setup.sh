#!/usr/bin/env bash
# Set up what the demo and the tests need, idempotently, and say what it does.
#   scripts/setup.sh           everything: system packages (Debian's chromium, for the browser
#                              tests), .venv with runstop_nb[test,ray], the pinned agent CLIs (npm)
#   scripts/setup.sh --python  only .venv (what `make demo`, `make check` and `make unit` need)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
what=${1:-all}

if [ "$what" = all ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium with apt-get (the browser tests use it; never a downloaded browser)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing Node.js and npm with apt-get (the agent CLIs run on it)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
fi

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing runstop_nb[test] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi

if [ "$what" = all ] && ! .venv/bin/python -c "import ray.job_submission" 2>/dev/null; then
  echo "setup: installing runstop_nb[ray] into .venv (the Ray backend's tests; about 400 MB)"
  .venv/bin/python -m pip install -q -e '.[test,ray]'
fi

if [ "$what" = all ]; then
  scripts/clis.sh
  touch .venv/.setup-complete
fi
