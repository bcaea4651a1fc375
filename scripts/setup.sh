#!/usr/bin/env bash
# Set up what the demo and the tests need, idempotently, and say what it does.
#   scripts/setup.sh           everything: system packages (Debian's chromium, nodejs, iproute2
#                              where missing), .venv with runstop_nb[test,ray], the pinned agent CLIs (npm)
#   scripts/setup.sh --python  only .venv (what `make demo`, `make check` and `make unit` need)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
what=${1:-all}

# Debian packages the full suite needs, installed only where missing, with one apt-get update:
# chromium (the browser tests use it; never a downloaded browser), Node.js and npm (the agent
# CLIs), iproute2 (`ip`: the Ray tests bring up loopback in a network namespace of their own).
if [ "$what" = all ]; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian's ${missing[*]} with apt-get"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
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
