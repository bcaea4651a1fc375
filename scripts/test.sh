#!/usr/bin/env bash
# The whole suite, as CI runs it: lint, types, then every test (unit, real-kernel, nbval
# notebooks, browser end-to-end, short soak). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f .venv/.setup-complete ]; then
  echo "test: the test set-up is missing (chromium, .venv, the agent CLIs); run: make setup test" >&2
  exit 2
fi
export PATH="$PWD/.venv/bin:$PATH"
export RUNSTOP_NB_HOME="${RUNSTOP_NB_HOME:-$(mktemp -d)/runstop-home}"
echo "== ruff";  ruff check runstop_nb tests benchmarks
echo "== mypy";  mypy
echo "== pytest"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi
exit "$rc"
