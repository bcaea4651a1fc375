"""The run widget: bounded windows, and its buttons clicked as a frontend clicks them."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator

import pytest

from runstop_nb._widget import LINE_CHARS, WINDOW_CHARS, clock, window

from .helpers import cookie_alive, wait_for
from .kernel import Kernel, runstop_kernel


def test_window_merges_streams_and_respects_the_budget() -> None:
    lines = [("stdout", f"line {i}") for i in range(10)] + [("stderr", "boom"), ("stdout", "after")]
    outs = window(lines)
    assert [o["name"] for o in outs] == ["stdout", "stderr", "stdout"]
    assert outs[1]["text"] == "boom\n"
    big = [("stdout", "x" * 1000) for _ in range(500)]
    outs = window(big)
    text = "".join(o["text"] for o in outs)
    assert len(text) <= WINDOW_CHARS + 200
    assert "earlier output not shown" in outs[0]["text"]
    assert "earlier output" in window(lines, more=True)[0]["text"]
    assert "earlier" not in window(lines)[0]["text"]


def test_window_clips_monster_lines() -> None:
    (out,) = window([("stdout", "y" * 1_000_000)])
    assert len(out["text"]) < LINE_CHARS + 20


def test_clock() -> None:
    assert clock(5) == "00:05" and clock(65) == "01:05" and clock(3723) == "1:02:03"


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    yield from runstop_kernel(tmp_path_factory.mktemp("whome"), "import runstop_nb\nfrom runstop_nb._widget import RunWidget\nfrom IPython.display import display")


def click(k: Kernel, widget_expr: str) -> None:
    """Send the comm message a frontend sends when the button is clicked."""
    model = k.eval(f"{widget_expr}.model_id")
    msg = k.kc.session.msg("comm_msg", {"comm_id": model, "data": {"method": "custom", "content": {"event": "click"}}})
    k.kc.shell_channel.send(msg)


def drain_iopub(k: Kernel, seconds: float) -> list[dict]:
    msgs, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msgs.append(k.kc.get_iopub_msg(timeout=0.05))
        except queue.Empty:
            pass
    return msgs


@pytest.mark.kernel
def test_stop_button_stops_the_tree_and_shows_cancelled(k: Kernel) -> None:
    k.ok("r = runstop_nb.start(['bash', '-c', \"(trap '' TERM; sleep 1000) & setsid sleep 1000 & sleep 1000\"],"
         " name='clicky', grace=1)\nw = RunWidget(r)\ndisplay(w)")
    cookie = k.eval("r.spec.cookie")
    wait_for(lambda: len(cookie_alive(cookie)) >= 4, 10, "the tree")
    stop_id = k.eval("w._stop.model_id")
    click(k, "w._stop")
    # The click flips the button at once, before the ladder's 1 s grace is over:
    early = [m for m in drain_iopub(k, 0.5) if m["msg_type"] == "comm_msg"
             and m["content"]["comm_id"] == stop_id]
    states = [m["content"]["data"].get("state", {}) for m in early]
    assert {"description": "Stopping…", "disabled": True}.items() <= {
        kv for s in states for kv in s.items()}, states
    wait_for(lambda: k.eval("r.status") == "cancelled", 10, "cancelled")
    assert cookie_alive(cookie) == []
    wait_for(lambda: k.eval("w._status.value") == "cancelled", 5, "the badge to say cancelled")
    assert k.eval("w._stop.layout.display") == "none"
    assert k.eval("w._rerun.layout.display") is None, "Rerun appears once the run is terminal"
    assert k.eval("w._exit.value") == "", "a stop's -15/-9 is not shown as an exit code"


@pytest.mark.kernel
def test_failed_stop_shows_an_error_and_the_retry_works(k: Kernel) -> None:
    k.ok("""
r2 = runstop_nb.start(['sleep', '1000'], name='flaky')
w2 = RunWidget(r2)
display(w2)
_real = r2._agent.terminate
_calls = []
def _flaky(grace):
    _calls.append(grace)
    if len(_calls) == 1:
        raise OSError('injected: the first stop fails')
    return _real(grace)
r2._agent.terminate = _flaky
""")
    click(k, "w2._stop")
    wait_for(lambda: "injected" in k.eval("w2._error.value"), 10, "the error line")
    assert k.eval("w2._error.layout.display") is None
    wait_for(lambda: k.eval("(w2._stop.description, w2._stop.disabled)") == ("Stop", False), 5,
             "the button to be enabled again")
    assert k.eval("r2.status") == "stopping"
    cookie = k.eval("r2.spec.cookie")
    click(k, "w2._stop")
    wait_for(lambda: k.eval("r2.status") == "cancelled", 10, "the retry to stop it")
    assert cookie_alive(cookie) == []


@pytest.mark.kernel
def test_rerun_button_rebinds_the_widget_to_a_new_run(k: Kernel) -> None:
    k.ok("r3 = runstop_nb.start(['sh', '-c', 'echo hi'], name='again')\nw3 = RunWidget(r3)\ndisplay(w3)\nr3.wait(10)")
    old = k.eval("r3.id")
    wait_for(lambda: k.eval("w3._rerun.layout.display") is None, 5, "the Rerun button")
    click(k, "w3._rerun")
    wait_for(lambda: k.eval("w3.run.id") != old, 10, "a new run in the widget")
    assert k.eval("w3.run.name") == "again" and k.eval("w3.run.wait(10)") == "completed"


@pytest.mark.kernel
def test_flood_widget_traffic_is_bounded(k: Kernel) -> None:
    """200,000 lines: every output update is small, and there are at most ~10 per second."""
    k.ok("rf = runstop_nb.start(['python', 'agents/flood.py', '--lines', '200000'], name='flood')\n"
         "wf = RunWidget(rf)\ndisplay(wf)")
    out_id = k.eval("wf._out.model_id")
    t0 = time.monotonic()
    reply = k.ok("rf.wait(60)\nimport time; time.sleep(0.5)")
    span = time.monotonic() - t0
    updates = [m for m in reply.comm_msgs if m["content"]["comm_id"] == out_id]
    sizes = [len(json.dumps(m["content"])) for m in updates]
    assert k.eval("rf.status") == "completed" and k.eval("rf.lines") == 200_000
    assert updates, "the output area was updated"
    assert max(sizes) <= 64 * 1024
    assert len(updates) <= 10 * span + 3
    assert sum(sizes) <= 3_000_000
    last = updates[-1]["content"]["data"]["state"]["outputs"]
    text = "".join(o["text"] for o in last)
    assert "000199999" in text, "the final frame shows the end of the output"
    assert text.count("\n") <= 202


@pytest.mark.kernel
def test_a_run_can_be_shown_again_by_get(k: Kernel) -> None:
    """After its cell output is cleared, a Run displays as its widget, with its tail."""
    k.ok("rg = runstop_nb.start(['sh', '-c', 'echo shown-again; sleep 1000'], name='again-shown')")
    wait_for(lambda: "shown-again" in k.eval("rg.output()"), 10, "output")
    reply = k.ok("runstop_nb.get('again-shown')")
    assert any("application/vnd.jupyter.widget-view+json" in d for d in reply.data)
    opened = [m for m in reply.comm_msgs if m["msg_type"] == "comm_open"
              and m["content"]["data"]["state"].get("_model_name") == "OutputModel"]
    wait_for(lambda: "shown-again" in k.eval(
        "''.join(o['text'] for w in __import__('gc').get_objects() if type(w).__name__ == 'RunWidget' "
        "and w.run.name == 'again-shown' for o in w._out.outputs)"), 10, "the tail in the new widget")
    assert opened, "a fresh output area was opened for the re-shown run"
    k.ok("rg.stop(grace=0.5)")


@pytest.mark.kernel
def test_dashboard_shows_every_run_and_stops_all(k: Kernel) -> None:
    k.ok("for i in range(3):\n    runstop_nb.start(['sleep', '1000'], name=f'dash{i}')\n"
         "d = runstop_nb.dashboard()\ndisplay(d)")
    names = k.eval("[w.run.name for w in d._grid.children]")
    assert {"dash0", "dash1", "dash2"} <= set(names)
    k.ok("runstop_nb.start(['sleep', '1000'], name='dash-late')")
    wait_for(lambda: "dash-late" in k.eval("[w.run.name for w in d._grid.children]"), 5,
             "a run started later to appear")
    cookies = k.eval("[r.spec.cookie for r in runstop_nb.runs() if not r.done]")
    click(k, "d._stop_all")
    wait_for(lambda: k.eval("[r.name for r in runstop_nb.runs() if not r.done]") == [], 15, "stop all")
    assert all(cookie_alive(c) == [] for c in cookies)
    wait_for(lambda: k.eval("d._summary.value").endswith("0 live"), 5, "the summary")


@pytest.mark.kernel
def test_past_run_shows_as_a_read_only_widget(k: Kernel) -> None:
    k.ok("rp = runstop_nb.start(['sh', '-c', 'echo from-the-past'], name='past')\nrp.wait(10)")
    reply = k.ok("pw = runstop_nb._widget.RunWidget(runstop_nb.load(rp.id), readonly=True)\n"
                 "runstop_nb.load(rp.id)")
    assert any("application/vnd.jupyter.widget-view+json" in d for d in reply.data)
    assert k.eval("pw._status.value") == "completed"
    assert k.eval("pw._stop.layout.display") == "none"
    assert "from-the-past" in k.eval("''.join(o['text'] for o in pw._out.outputs)")
