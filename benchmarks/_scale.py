"""P9 (with P5's 200-agent part): one kernel holding hundreds of live agents.

In one fresh kernel, in this order:

1. the idle kernel's CPU, the baseline;
2. P9: ``plan.crowd`` cooperative trees (sh and two sleeps each) started through the API,
   every one shown in the compact dashboard (``runstop_nb.dashboard()``, one live table);
   the kernel's CPU over ``plan.crowd_window`` 1 s windows; then ``stop_all()`` timed in
   the kernel and verified from outside: no live process carries any of the runs' cookies;
3. the same trees Popen'd raw, each stopped with killpg(TERM) + wait: stop_all's baseline;
4. P5: ``plan.crowd`` sleeps from one ``%%agent_run`` cell, shown in a grid, until the cell
   returns with all of them running; and the same number Popen'd raw from one cell.
"""

from __future__ import annotations

import os
import time
from typing import Any

from _capture import SETTLE, load
from _kernel import Kernel
from _load import _cpu_windows
from _plan import Plan

COOKIE_VAR = b"RUNSTOP_NB_COOKIE="


def cookies_alive(cookies: set[str]) -> tuple[list[int], list[int]]:
    """Processes (live, zombie) whose environment carries one of ``cookies``, read from /proc."""
    wanted = {COOKIE_VAR + c.encode() for c in cookies}
    live: list[int] = []
    zombies: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = set(f.read().split(b"\0"))
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if env & wanted:
            (zombies if state in (b"Z", b"X") else live).append(int(name))
    return live, zombies


def crowd(k: Kernel, plan: Plan) -> dict[str, Any]:
    n = plan.crowd
    load(k)
    k.call("import _inscale as S")
    k.call("B.start_sleepers(2, True); B.stop_all_and_clean()")  # warm-up: imports, first widgets
    k.iopub.quiet(SETTLE)
    idle = _cpu_windows(k, plan.idle_window)

    started = k.call(f"R = S.start_trees({n})", want="R", timeout=300)
    if started["running"] != n:
        raise RuntimeError(f"only {started['running']} of {n} trees were running")
    shown = k.call("R = S.show_dashboard()", want="R")
    time.sleep(1.5)  # the table's first frames, then the steady state
    shown = k.call("R = S.dashboard_rows()", want="R")
    cpu = _cpu_windows(k, plan.crowd_window)
    rss_mb = k.rss() / 1e6
    stopped = k.call("R = S.stop_all_timed()", want="R", timeout=300)
    live, zombies = cookies_alive(set(started["cookies"]))
    k.call("S.close_dashboard(); B.stop_all_and_clean()", timeout=300)
    k.iopub.quiet(SETTLE)

    raw_stop = k.call(f"R = S.raw_stop_trees({n})", want="R", timeout=300)

    t0 = time.perf_counter()
    cell = k.call(f"R = B.start_sleepers({n}, True)", want="R", timeout=300)
    cell_wall = time.perf_counter() - t0
    k.call("B.stop_all_and_clean()", timeout=300)
    k.iopub.quiet(SETTLE)
    raw_start = k.call(f"R = S.raw_sleepers({n})", want="R", timeout=300)
    k.call("S.stop_raw()")
    return {
        "agents": n, "idle_cpu": idle, "cpu": cpu, "kernel_rss_mb": rss_mb,
        "start_s": started["s"], "complete_s": started["complete_s"],
        "dashboard_rows": shown["rows"], "dashboard_live": shown["live"],
        "stop_all_s": stopped["s"], "stopped": stopped["stopped"], "stop_n": stopped["n"],
        "escalated": stopped["escalated"], "members": stopped["members"], "members_dead": stopped["members_dead"],
        "cookies_live": live, "cookies_zombie": zombies,
        "raw_stop_s": raw_stop["s"], "raw_members": raw_stop["members"],
        "cell_start_s": cell["s"], "cell_running": cell["running"], "cell_wall_s": cell_wall,
        "raw_start_s": raw_start["s"],
    }
