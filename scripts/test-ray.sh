#!/usr/bin/env bash
# The Ray tests (and the Ray benchmark) against a real local Ray head, inside a network
# namespace of their own, so that Ray can only bind to and talk to 127.0.0.1.
#
#   scripts/test-ray.sh                     pytest -m ray tests/test_ray.py
#   scripts/test-ray.sh -k stop             ... with extra pytest arguments
#   scripts/test-ray.sh --run CMD ARGS...   any command instead (e.g. the benchmark)
#
# One test runs this script again from inside (tests/test_ray.py, the head's death): it
# clears RUNSTOP_NB_RAY_INNER and RUNSTOP_NB_IN_NETNS on purpose, so that the nested run
# gets a namespace and a head of its own, which it may kill.
#
# Needs root (unshare -n) and Ray installed in .venv (scripts/setup.sh installs the extra).
# The head is owned by the pid this script started: the EXIT trap sends it SIGTERM, then
# SIGKILLs whatever of that head is left (its process tree, and processes that name its
# own temp folder). Never `ray stop`: it kills every Ray process on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python

if [[ "${RUNSTOP_NB_IN_NETNS:-}" == 1 && -z "${RUNSTOP_NB_RAY_INNER:-}" ]]; then
    :  # the re-exec below
elif [[ -n "${RUNSTOP_NB_RAY_INNER:-}" ]]; then
    echo "test-ray: already inside a Ray test namespace; not starting another head" >&2
    exit 2
fi
if [[ "${RUNSTOP_NB_IN_NETNS:-}" != 1 ]]; then
    if ! "$PY" -c "import ray.job_submission" 2>/dev/null; then
        echo "test-ray: Ray is not installed in .venv; run: $PY -m pip install 'runstop_nb[ray]'" >&2
        exit 2
    fi
    exec unshare -n env RUNSTOP_NB_IN_NETNS=1 "$0" "$@"
fi

export RUNSTOP_NB_RAY_INNER=1  # a nested call of this script refuses to run
ip link set lo up
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
TMP=$(mktemp -d /tmp/rsray.XXXXXX)
PORT=6390
DASH=8265
export RUNSTOP_NB_RAY_ADDRESS=http://127.0.0.1:$DASH
export RUNSTOP_NB_HOME=${RUNSTOP_NB_HOME:-$TMP/home}
HEAD=""

stop_head() {
    local left
    if [[ -n "$HEAD" ]]; then
        local tree
        tree=$("$PY" -c "import psutil,sys; p=psutil.Process($HEAD); print(' '.join(str(c.pid) for c in p.children(recursive=True)))" 2>/dev/null || true)
        kill -TERM "$HEAD" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$HEAD" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$HEAD" $tree 2>/dev/null || true
    fi
    # What that head left: processes that name its temp folder (no other head uses it).
    left=$("$PY" - "$TMP" <<'EOF'
import os, sys
import psutil
me, needle = os.getpid(), sys.argv[1]
found = []
for p in psutil.process_iter(["cmdline"]):
    if p.pid != me and needle in " ".join(p.info["cmdline"] or []):
        found.append(str(p.pid))
print(" ".join(found))
EOF
)
    if [[ -n "$left" ]]; then
        echo "test-ray: SIGKILL to what the head left: $left" >&2
        kill -KILL $left 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap stop_head EXIT
trap 'exit 143' TERM  # so that a SIGTERM also ends the head (through the EXIT trap)

t0=$(date +%s.%N)
"$ROOT/.venv/bin/ray" start --head --block --port=$PORT --dashboard-port=$DASH --node-ip-address=127.0.0.1 \
    --include-dashboard=true --dashboard-host=127.0.0.1 --disable-usage-stats --num-cpus=2 \
    --temp-dir="$TMP/ray" >"$TMP/head.log" 2>&1 &
HEAD=$!
"$PY" - "$RUNSTOP_NB_RAY_ADDRESS" <<'EOF' || { cat "$TMP/head.log" >&2; exit 1; }
import sys, time
from ray.job_submission import JobSubmissionClient
deadline = time.monotonic() + 90
while True:
    try:
        JobSubmissionClient(sys.argv[1]).list_jobs()
        break
    except Exception as e:
        if time.monotonic() > deadline:
            sys.exit(f"test-ray: the head's Jobs API did not answer in 90 s: {e}")
        time.sleep(0.5)
EOF
export RUNSTOP_NB_RAY_HEAD_PID=$HEAD  # tests/rayhead.py kills this head on purpose
echo "test-ray: head pid $HEAD answers at $RUNSTOP_NB_RAY_ADDRESS after $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"

if [[ "${1:-}" == "--run" ]]; then
    shift
    "$@"
else
    "$PY" -m pytest -p no:cacheprovider -m ray tests/test_ray.py "$@"
fi
