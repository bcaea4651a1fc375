"""The eight metrics, judged: each group's raw samples become a figure, a baseline and a verdict.

Targets are checked on medians, except where the issue bounds every instance (P2's
per-update size and rate, P8's growth): there the worst sample is judged.
"""

from __future__ import annotations

import statistics
from typing import Any

from _kernel import Traffic
from _plan import Plan
from _report import Metric, Summary, paired_ratio

KIB = 1024
GRACE_P4 = 0.2


def _s(samples: list[float]) -> Summary:
    return Summary.of(samples)


def _t(traffic: list[Traffic]) -> dict[str, Any]:
    return {
        "messages": [t.messages for t in traffic],
        "mb": [round(t.bytes / 1e6, 3) for t in traffic],
        "output_updates": [t.output_updates for t in traffic],
        "max_updates_per_s_per_widget": max(t.max_updates_per_s for t in traffic),
        "max_message_kib": round(max(t.max_message for t in traffic) / KIB, 1),
        "max_messages_per_s": max(t.max_messages_per_s for t in traffic),
    }


def p1(cap: dict[str, Any], plan: Plan) -> Metric:
    sec, cpu = cap["seconds"], cap["cpu"]
    ratio = paired_ratio(sec["widget"], sec["pipe"])
    api_ratio = paired_ratio(sec["api"], sec["pipe"])
    floor_ratio = paired_ratio(sec["widget"], sec["file"])
    cpu_ratio = paired_ratio(cpu["widget"], cpu["pipe"])
    mb = plan.capture_lines * 60 / 1e6

    def c(mode: str) -> str:
        return f"{statistics.median(cpu[mode]):.2f}"

    return Metric(
        "P1", f"capture {plan.capture_lines:,} lines ({mb:.0f} MB)", "s", ".3f",
        _s(sec["widget"]), _s(sec["pipe"]), "Popen, stdout pipe copied to a file", ratio.median,
        "ratio ≤ 1.1", ratio.median <= 1.1 and cap["verified"],
        notes=(
            f"shown in a run widget (%agent_run --wait), until done with the whole log verified "
            f"(line count and last line); paired ratios {ratio.text('.2f')}",
            f"not displayed (runstop_nb.start + wait): {_s(sec['api']).text('.3f')} s, "
            f"ratio to the pipe {api_ratio.text('.2f')}",
            f"floor, Popen writing straight into a file: {_s(sec['file']).text('.3f')} s; "
            f"widget run / floor {floor_ratio.text('.2f')}",
            f"CPU seconds per capture (agent + kernel + guard; load-independent): widget {c('widget')}, "
            f"api {c('api')}, pipe {c('pipe')}, file {c('file')}; widget / pipe {cpu_ratio.text('.2f')}; "
            f"of which the kernel: widget {statistics.median(cap['cpu_kernel']['widget']):.2f}, "
            f"pipe {statistics.median(cap['cpu_kernel']['pipe']):.2f}",
        ),
        details={"seconds": sec, "cpu_s": cpu, "cpu_kernel_s": cap["cpu_kernel"], "verified": cap["verified"],
                 "ratio_api_vs_pipe": api_ratio.median, "ratio_widget_vs_file": floor_ratio.median,
                 "cpu_ratio_widget_vs_pipe": cpu_ratio.median},
    )


def p2(cap: dict[str, Any], naive: dict[str, Any], big: dict[str, Any] | None, plan: Plan) -> Metric:
    runs: list[Traffic] = cap["traffic"]
    base: Traffic = naive["traffic"]
    worst_rate = max(t.max_updates_per_s for t in runs)
    worst_msg = max(t.max_message for t in runs)
    worst_total = max(t.bytes for t in runs)
    sustained = big["traffic"] if big else []
    if sustained:
        worst_rate = max(worst_rate, *(t.max_updates_per_s for t in sustained))
        worst_msg = max(worst_msg, *(t.max_message for t in sustained))
    total = _s([t.bytes / 1e6 for t in runs])
    met = worst_rate <= 10 and worst_msg <= 64 * KIB and worst_total <= 3e6
    notes = [
        f"per run of {plan.capture_lines:,} lines: {statistics.median(t.messages for t in runs):.0f} IOPub "
        f"messages, {statistics.median(t.output_updates for t in runs):.0f} output updates; busiest second "
        f"{worst_rate} updates per widget; largest message {worst_msg / KIB:.1f} KiB (worst run)",
        f"naive baseline: {base.messages:,} messages, {base.bytes / 1e6:,.1f} MB for {plan.naive_lines:,} "
        f"lines, {naive['kernel_s']:.1f} s of kernel time; its largest message {base.max_message / KIB:,.0f} KiB",
    ]
    if sustained:
        rates = [t.output_updates / t.seconds for t in sustained]
        notes.append(f"sustained, over P8's {_size(big['bytes'])} runs: {statistics.median(rates):.1f} "
                     f"updates/s on average, busiest second {max(t.max_updates_per_s for t in sustained)}, "
                     f"{statistics.median(t.bytes for t in sustained) / 1e6:.2f} MB per run")
    return Metric(
        "P2", "widget traffic of that run", "MB", ".3f", total, Summary.of([base.bytes / 1e6]),
        f"append_stdout per line, first {plan.naive_lines:,} lines", total.median / (base.bytes / 1e6),
        "≤ 10 updates/s, each ≤ 64 KiB, total ≤ 3 MB", met, notes=tuple(notes),
        details={"runs": _t(runs), "naive": base.as_json(), "naive_kernel_s": naive["kernel_s"],
                 "sustained": _t(sustained) if sustained else None},
    )


def p3(st: dict[str, Any]) -> Metric:
    rs, raw = st["runstop_ms"], st["raw_ms"]
    value = _s(rs)
    return Metric(
        "P3", "stop, cooperative 11-process tree", "ms", ".1f", value, _s(raw),
        "os.killpg TERM + wait, verified", paired_ratio(rs, raw).median,
        "median ≤ 25 ms", value.median <= 25 and st["verified"],
        notes=("until every process of the tree is verified dead (zombies count: they cannot run)",),
        details={**st},
    )


def p4(st: dict[str, Any]) -> Metric:
    rs, raw = st["runstop_ms"], st["raw_ms"]
    value = _s(rs)
    limit = GRACE_P4 * 1e3 + 30
    return Metric(
        "P4", "stop, one member ignores TERM, grace 0.2 s", "ms", ".1f", value, _s(raw),
        "killpg TERM, 0.2 s, KILL, verified", paired_ratio(rs, raw).median,
        f"median ≤ {limit:.0f} ms (grace + 30)", value.median <= limit and st["verified"],
        notes=(f"over the grace: {value.median - GRACE_P4 * 1e3:.1f} ms (raw: "
               f"{statistics.median(raw) - GRACE_P4 * 1e3:.1f} ms)",),
        details={**st},
    )


def p5(fl: dict[str, Any], sleep: dict[str, Any] | None, plan: Plan) -> Metric:
    e2e, e2e_raw = _s(fl["e2e_ms"]), _s(fl["e2e_raw_ms"])
    delta = e2e.median - e2e_raw.median
    log, tail, raw = _s(fl["log_ms"]), _s(fl["tail_ms"]), _s(fl["raw_ms"])
    ui_start = sleep["ui"]["start_s"] if sleep else None
    met = delta <= 60 and fl["verified"] and ui_start is not None and ui_start <= 2.0
    notes = [
        f"end to end: the first line arriving on IOPub, in the widget (raw: printed by the cell); "
        f"runstop_nb is {delta:+.0f} ms over raw",
        f"in the kernel: in the run's log after {log.text('.1f')} ms, in the live tail (run.lines, what "
        f"the widget renders) after {tail.text('.1f')} ms; raw Popen readline {raw.text('.1f')} ms; "
        f"start() returned after {_s(fl['started_ms']).text('.1f')} ms",
    ]
    if sleep:
        notes.append(f"{plan.agents} agents from one %%agent_run cell: all running and shown after "
                     f"{ui_start:.2f} s (through the API, 16 threads, not shown: {sleep['api']['start_s']:.2f} s)")
    return Metric(
        "P5", "time to the first output line", "ms", ".1f", e2e, e2e_raw,
        "Popen (new session), readline, print", e2e.median / e2e_raw.median,
        f"≤ raw + 60 ms; {plan.agents} agents from one cell running ≤ 2 s", met, notes=tuple(notes),
        details={**fl, "agents": plan.agents, "agents_start_s": ui_start,
                 "agents_api_start_s": sleep["api"]["start_s"] if sleep else None,
                 "delta_e2e_ms": delta, "delta_log_ms": log.median - raw.median,
                 "delta_tail_ms": tail.median - raw.median},
    )


def p6(load: dict[str, Any], plan: Plan) -> Metric:
    flooded, idle, raw = _s(load["flooded_ms"]), _s(load["idle_ms"]), _s(load["raw_ms"])
    ratio = flooded.median / idle.median
    traffic: list[Traffic] = load["traffic"]
    return Metric(
        "P6", f"trivial cell round trip, {plan.floods} agents flooding visible widgets", "ms", ".1f",
        flooded, idle, "same kernel, idle", ratio, "ratio ≤ 2", ratio <= 2,
        notes=(
            f"control, the same floods Popen'd into files (no runstop_nb, no widgets): {raw.text('.1f')} ms, "
            f"{raw.median / idle.median:.2f}x idle; runstop_nb / control {flooded.median / raw.median:.2f}x",
            f"floods wrote {statistics.median(load['runstop_mb_s']):.0f} MB/s under runstop_nb, "
            f"{statistics.median(load['raw_mb_s']):.0f} MB/s raw; widgets got "
            f"{sum(t.output_updates for t in traffic) / sum(t.seconds for t in traffic) / plan.floods:.1f} "
            f"output updates/s each (10 at most by design)",
        ),
        details={**{k: v for k, v in load.items() if k != "traffic"}, "traffic": _t(traffic)},
    )


def _memory(phase: dict[str, Any], agents: int) -> dict[str, float]:
    guards = phase["guards"]
    per_kernel = max(0.0, phase["kernel_growth_mb"]) / agents
    out = {"kernel_growth_mb_per_run": per_kernel}
    for kind in ("rss", "uss", "pss"):
        g = statistics.median(x[kind] for x in guards)
        out[f"guard_{kind}_mb"] = g
        out[f"per_run_{kind}_mb"] = g + per_kernel
    return out


def p7(sleep: dict[str, Any], plan: Plan) -> Metric:
    ui, api = sleep["ui"], sleep["api"]
    cpu = _s(ui["cpu"])
    mem, api_mem = _memory(ui, plan.agents), _memory(api, plan.agents)
    idle = statistics.median(sleep["idle_cpu"])
    met = cpu.median <= 1.0 and mem["per_run_pss_mb"] <= 12
    t: Traffic = ui["traffic"]
    return Metric(
        "P7", f"{plan.agents} sleeping agents, {plan.sleep_window} s, shown in a grid", "% CPU", ".2f",
        cpu, None, f"none (idle kernel: {idle:.2f} % CPU)", None,
        "kernel CPU ≤ 1 %; ≤ 12 MB added per run", met,
        notes=(
            f"added per run (guard + kernel growth / {plan.agents}): PSS {mem['per_run_pss_mb']:.1f} MB "
            f"(judged), USS {mem['per_run_uss_mb']:.1f} MB, RSS {mem['per_run_rss_mb']:.1f} MB; guard PSS "
            f"{mem['guard_pss_mb']:.1f}, kernel {mem['kernel_growth_mb_per_run']:.2f} MB per run",
            f"widgets sent {t.messages / t.seconds:.0f} messages/s ({t.bytes / t.seconds / 1e3:.0f} kB/s) "
            f"while every agent slept",
            f"not displayed (API): kernel CPU {_s(api['cpu']).text('.2f')} %, PSS per run "
            f"{api_mem['per_run_pss_mb']:.1f} MB",
        ),
        details={"ui": {**{k: v for k, v in ui.items() if k not in ("traffic", "guards")}, **mem,
                        "traffic": t.as_json()},
                 "api": {**{k: v for k, v in api.items() if k not in ("traffic", "guards")}, **api_mem},
                 "idle_cpu": sleep["idle_cpu"]},
    )


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def p8(big: dict[str, Any]) -> Metric:
    growth = _s(big["growth_mb"])
    before = big["before_mb"]
    met = growth.max <= 20 and big["verified"]
    return Metric(
        "P8", f"kernel RSS after {_size(big['bytes'])} of output", "MB", ".1f", growth,
        Summary.of([before]), "kernel RSS before the run", (before + growth.median) / before,
        "growth ≤ 20 MB", met,
        notes=(f"value is the growth after each run against before the first (cumulative); "
               f"peak during a run +{max(big['peak_mb']):.1f} MB; shown in a run widget",),
        details={k: v for k, v in big.items() if k != "traffic"},
    )
