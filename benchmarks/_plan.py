"""How much to measure: the full plan (the published figures) and the quick smoke plan."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    capture_lines: int  # P1: lines per flood (60 bytes each)
    capture_rounds: int  # P1: rounds of (widget, api, pipe, file), rotated each round
    naive_lines: int  # P2 baseline: append_stdout calls
    stop_pairs: int  # P3: (runstop, raw) pairs
    stubborn_pairs: int  # P4
    first_line_pairs: int  # P5: in-kernel (runstop, raw) pairs
    e2e_pairs: int  # P5: end-to-end pairs, first line on IOPub
    agents: int  # P5 / P7: agents started from one cell
    sleep_window: int  # P7: seconds of sampling, in 1 s windows
    idle_window: int  # P7: seconds of idle-kernel sampling before the agents
    floods: int  # P6: flooding agents
    flood_phase: float  # P6: seconds per phase
    flood_cycles: int  # P6: cycles of (idle, raw floods, runstop floods)
    big_lines: int  # P8: lines per run (60 bytes each)
    big_runs: int  # P8: consecutive runs in one kernel
    crowd: int  # P9 / P5: live agents in one kernel, and agents started from one cell
    crowd_window: int  # P9: seconds of CPU sampling with all of them shown
    history_rows: int  # P10: recorded runs in the big history
    history_samples: int  # P10: samples per query
    # --curves
    curve_trees: tuple[int, ...] = (10, 100, 1000)  # processes per tree
    curve_tree_pairs: int = 5
    curve_agents: tuple[int, ...] = (1, 10, 50, 200)  # agents from one cell / widgets shown
    curve_window: int = 5  # seconds of CPU sampling per point
    curve_gb: tuple[float, ...] = (0.1, 1.0, 10.0)  # output volumes

    @classmethod
    def full(cls) -> Plan:
        return cls(
            name="full", capture_lines=1_000_000, capture_rounds=7, naive_lines=2000,
            stop_pairs=20, stubborn_pairs=10, first_line_pairs=20, e2e_pairs=10,
            agents=50, sleep_window=10, idle_window=3,
            floods=8, flood_phase=3.0, flood_cycles=2,
            big_lines=16_666_667, big_runs=2,
            crowd=200, crowd_window=10, history_rows=100_000, history_samples=20,
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            name="quick", capture_lines=100_000, capture_rounds=2, naive_lines=200,
            stop_pairs=3, stubborn_pairs=2, first_line_pairs=3, e2e_pairs=2,
            agents=10, sleep_window=2, idle_window=1,
            floods=4, flood_phase=1.0, flood_cycles=1,
            big_lines=500_000, big_runs=1,
            crowd=10, crowd_window=2, history_rows=2_000, history_samples=3,
            curve_tree_pairs=1, curve_window=1, curve_gb=(0.1, 1.0),
        )
