"""The run view: what it sends (bounded, only on change), and its buttons as a front end sends them.

Unit tests read the state a view would send for a stand-in run (``tests.fakerun``); kernel
tests drive real views in a real kernel through ``jupyter_client`` and count comm models
at IOPub: at most two per run, and none left open for a run nothing can show.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runstop_nb import _runstate as rs
from runstop_nb._renderer import Renderer
from runstop_nb._results import StopResult
from runstop_nb._worktree import FileChange, Worktree

from .fakerun import FakeRun, card, summary
from .helpers import cookie_alive, wait_for
from .kernel import Kernel, runstop_kernel

WIDGET = "application/vnd.jupyter.widget-view+json"

# -- what a view sends: unit tests on a stand-in run ---------------------------------------


def test_window_merges_streams_and_respects_the_budget() -> None:
    lines = [("stdout", f"line {i}") for i in range(10)] + [("stderr", "boom"), ("stdout", "after")]
    outs = rs.window(lines)
    assert [o["name"] for o in outs] == ["stdout", "stderr", "stdout"]
    assert outs[1]["text"] == "boom\n"
    big = [("stdout", "x" * 1000) for _ in range(500)]
    outs = rs.window(big)
    assert len("".join(o["text"] for o in outs)) <= rs.WINDOW_CHARS + 200
    assert "earlier output not shown" in outs[0]["text"]
    assert "earlier output" in rs.window(lines, more=True)[0]["text"]
    assert "earlier" not in rs.window(lines)[0]["text"]


def test_window_clips_monster_lines() -> None:
    (out,) = rs.window([("stdout", "y" * 1_000_000)])
    assert len(out["text"]) < rs.LINE_CHARS + 20


def test_state_says_sizes_and_counts_in_words() -> None:
    run = FakeRun(status="completed", done=True, returncode=0, elapsed=12.34, bytes=417)
    s = rs.state(run, counted=1)
    assert (s["bytes_text"], s["lines_text"], s["exit"], s["elapsed"]) == ("417 B", "1 line", "exit 0", 12.3)
    assert rs.state(FakeRun(bytes=1_234_567), counted=2)["bytes_text"] == "1.2 MB"
    assert rs.state(FakeRun(), counted=2)["lines_text"] == "2 lines"


def test_exit_text_names_signals_and_leaves_our_own_stops_to_the_stop_details() -> None:
    assert rs.exit_text(FakeRun(done=True, status="failed", returncode=3)) == "exit 3"
    assert rs.exit_text(FakeRun(done=True, status="failed", returncode=-11)) == "killed by SIGSEGV"
    assert rs.exit_text(FakeRun(done=True, status="cancelled", returncode=-9)) == ""
    assert rs.exit_text(FakeRun(done=False, returncode=None)) == ""


def test_stop_details_say_escalation_cause_verification_and_note() -> None:
    result = StopResult(run_id="x", name="fake", stopped=True, reason="stopped", prior_status="running",
                        status="cancelled", escalated=True, signalled=3, elapsed_s=1.0234,
                        verified_by="subreaper", cause="budget", note="spent $5.02 of a $5.00 budget")
    run = FakeRun(status="cancelled", done=True, returncode=-9, last_stop=result, grace=1.0)
    d = rs.stop_details(run)
    assert d is not None
    assert d["headline"] == "budget exceeded" and d["cause"] == "budget"
    assert "SIGKILL needed after 1 s" in d["facts"] and "took 1.02 s" in d["facts"]
    assert "verified dead by subreaper" in d["facts"] and "3 processes signalled" in d["facts"]
    assert d["note"] == "spent $5.02 of a $5.00 budget"
    gentle = StopResult(run_id="x", name="fake", stopped=True, reason="stopped", prior_status="running",
                        status="cancelled", signalled=1, elapsed_s=0.012, verified_by="cgroup")
    d2 = rs.stop_details(FakeRun(last_stop=gentle, done=True, status="cancelled"))
    assert d2 is not None and d2["headline"] == "stopped"
    assert "exited on SIGTERM" in d2["facts"] and "took 12 ms" in d2["facts"] and "1 process signalled" in d2["facts"]
    assert rs.stop_details(FakeRun()) is None


def test_info_has_the_command_short_folders_and_the_agent_format() -> None:
    run = FakeRun(worktree=Worktree(path="/tmp/project/.runstop/wt/fake", branch="runstop/fake-1", base="a" * 40,
                                    repo="/tmp/project"))
    i = rs.info(run)
    assert i["command"] == "claude -p fix the tests" and i["format"] == "claude" and i["live"] is True
    assert i["log"] == ".runstop/runs/f00dfeed01", "the log folder is said relative to the run's folder"
    assert i["worktree"]["branch"] == "runstop/fake-1"
    assert i["ray"] is None
    assert rs.short_path("/a/b/c/d/e") == "…/d/e"
    on_ray = {"address": "http://head:8265", "job_id": "runstop-f00dfeed01", "node": "n1"}
    assert rs.info(FakeRun(ray_job=on_ray))["ray"] == on_ray, "the details show Ray's job id and the node"


def test_cards_keep_the_newest_within_the_budget_and_mark_cut_ones() -> None:
    many = [card(i, body="b" * 3000, full=9000) for i in range(150)]
    out = rs.cards(many)
    assert len(out) <= rs.CARD_WINDOW and out[-1]["id"] == "c149", "the newest cards, oldest first"
    assert sum(len(c["body"]) + len(c["detail"]) for c in out) <= rs.CARD_CHARS + rs.CARD_WINDOW * 2 * rs.CUT_CARD_CHARS
    assert len(json.dumps(out)) < 64 * 1024
    assert all(c["cut"] for c in out), "every body is shorter than its full text: each offers 'show all'"
    whole = rs.cards([card(1, body="short")])
    assert whole[0]["cut"] is False and whole[0]["body"] == "short"


def test_agent_totals_and_files() -> None:
    a = rs.agent(summary(cost=None))
    assert a is not None and a["cost_usd"] is None and a["turns"] == 3 and a["input_tokens"] == 12_300
    assert rs.agent(None) is None
    rows = rs.files([FileChange("src/a.py", 3, 1, "modified"), FileChange("img.png", None, None, "added")])
    assert rows[0] == {"path": "src/a.py", "added": 3, "removed": 1, "status": "modified", "old_path": None}
    assert rows[1]["added"] is None


def test_resume_is_offered_only_for_an_ended_live_agent_run_with_a_session() -> None:
    assert rs.state(FakeRun(done=True, status="completed", agent=summary()))["can_resume"] is True
    assert rs.state(FakeRun(done=False, agent=summary()))["can_resume"] is False
    assert rs.state(FakeRun(done=True, status="completed", agent=summary(session=None)))["can_resume"] is False
    assert rs.state(FakeRun(done=True, status="completed", agent=summary(), live=False))["can_resume"] is False


def test_cut_says_where_it_cut() -> None:
    assert rs.cut("abc", 10, "x") == "abc"
    assert "cut at 10 of 100" in rs.cut("a" * 100, 10, "the diff")


class Counting:
    """A view that counts its refreshes."""

    def __init__(self, keep: bool = True) -> None:
        self.calls = 0
        self.keep = keep

    def refresh(self) -> bool:
        self.calls += 1
        return self.keep


def test_the_renderer_refreshes_only_what_was_marked() -> None:
    r = Renderer()
    item, finished = Counting(), Counting(keep=False)
    r.add(item)
    r.add(finished)
    wait_for(lambda: item.calls == 1 and finished.calls == 1, 5, "the first frame")
    time.sleep(0.5)  # five frames: nothing marked, nothing refreshed
    assert item.calls == 1
    r.mark(item)
    r.mark(finished)
    wait_for(lambda: item.calls == 2, 5, "the marked view's frame")
    time.sleep(0.3)
    assert finished.calls == 1, "a view that said it is finished is dropped"


# -- real views in a real kernel -------------------------------------------------------------


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    yield from runstop_kernel(tmp_path_factory.mktemp("whome"),
                              "import runstop_nb\nfrom runstop_nb._widget import RunWidget, view_for\n"
                              "from runstop_nb._viewset import views\nfrom IPython.display import display")


def send(k: Kernel, widget_expr: str, **content: Any) -> None:
    """Send the custom message a view sends when one of its buttons is clicked."""
    model = k.eval(f"{widget_expr}.model_id")
    msg = k.kc.session.msg("comm_msg", {"comm_id": model, "data": {"method": "custom", "content": content}})
    k.kc.shell_channel.send(msg)


def drain_iopub(k: Kernel, seconds: float) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msgs.append(k.kc.get_iopub_msg(timeout=0.05))
        except queue.Empty:
            pass
    return msgs


def opened(msgs: list[dict[str, Any]]) -> dict[str, str]:
    """comm id -> model name, for every comm_open among ``msgs``."""
    return {m["content"]["comm_id"]: m["content"]["data"]["state"].get("_model_name", "?")
            for m in msgs if m["msg_type"] == "comm_open"}


def closed(msgs: list[dict[str, Any]]) -> set[str]:
    return {m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_close"}


def in_cell(k: Kernel, code: str, cell_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Execute ``code`` as the front end runs the cell ``cell_id``; return every IOPub message."""
    msg = k.kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                               "user_expressions": {}, "allow_stdin": False,
                                               "stop_on_error": True}, metadata={"cellId": cell_id})
    k.kc.shell_channel.send(msg)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = k.kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        out.append(m)
        if (m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == msg["header"]["msg_id"]):
            break
    while True:
        reply = k.kc.get_shell_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            assert reply["content"]["status"] == "ok", reply["content"]
            return out


@pytest.mark.kernel
def test_a_run_costs_two_models_whatever_shows_it(k: Kernel) -> None:
    reply = k.ok("r0 = runstop_nb.start(['sleep', '1000'], name='two')\nr0")
    assert any(WIDGET in d for d in reply.data)
    models = opened(reply.comm_msgs)
    mine = sorted(n for n in models.values() if n != "WidgetModel")  # the kernel's one pulse, once
    assert mine == ["AnyModel", "LayoutModel"], models
    again = k.ok("display(r0)\ndisplay(runstop_nb.get('two'))")
    assert sum(WIDGET in d for d in again.data) == 2
    assert opened(again.comm_msgs) == {}, "showing the same run again opens no model"
    k.ok("r0.stop(grace=0.2)")


@pytest.mark.kernel
def test_stop_flips_at_once_then_shows_cancelled_with_its_details(k: Kernel) -> None:
    k.ok("r = runstop_nb.start(['bash', '-c', \"(trap '' TERM; sleep 1000) & setsid sleep 1000 & sleep 1000\"],"
         " name='clicky', grace=1)\nw = view_for(r)\ndisplay(w)")
    cookie = k.eval("r.spec.cookie")
    wait_for(lambda: len(cookie_alive(cookie)) >= 4, 10, "the tree")
    model = k.eval("w.model_id")
    send(k, "w", do="stop")
    early = [m for m in drain_iopub(k, 0.5) if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model]
    states = [m["content"]["data"]["state"].get("state", {}) for m in early]
    assert any(s.get("busy") is True for s in states), "the click says Stopping… before the 1 s grace is over"
    wait_for(lambda: k.eval("r.status") == "cancelled", 10, "cancelled")
    assert cookie_alive(cookie) == []
    wait_for(lambda: k.eval("w.state['status']") == "cancelled", 5, "the view to say cancelled")
    state = k.eval("w.state")
    assert state["exit"] == "", "a stop's -15/-9 is not shown as an exit code"
    assert state["stop"]["escalated"] is True and "SIGKILL needed after 1 s" in state["stop"]["facts"]
    assert state["stop"]["verified_by"], "the view says what verified the tree dead"
    assert state["lines_text"].endswith(("line", "lines")) and state["bytes_text"].endswith("B")


@pytest.mark.kernel
def test_failed_stop_shows_an_error_and_the_retry_works(k: Kernel) -> None:
    k.ok("""
r2 = runstop_nb.start(['sleep', '1000'], name='flaky')
w2 = view_for(r2)
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
    send(k, "w2", do="stop")
    wait_for(lambda: "injected" in k.eval("w2.notice") + str(k.eval("w2.state.get('error')")), 10, "the error line")
    wait_for(lambda: k.eval("w2.state['busy']") is False, 5, "the button to be enabled again")
    assert k.eval("r2.status") == "stopping"
    cookie = k.eval("r2.spec.cookie")
    send(k, "w2", do="stop")
    wait_for(lambda: k.eval("r2.status") == "cancelled", 10, "the retry to stop it")
    assert cookie_alive(cookie) == []


@pytest.mark.kernel
def test_rerun_binds_the_same_model_to_the_new_run(k: Kernel) -> None:
    k.ok("r3 = runstop_nb.start(['sh', '-c', 'echo hi'], name='again')\nw3 = view_for(r3)\ndisplay(w3)\nr3.wait(10)")
    old = k.eval("r3.id")
    wait_for(lambda: k.eval("w3.state['done']") is True, 5, "the ended state")
    send(k, "w3", do="rerun")
    wait_for(lambda: k.eval("w3.run.id") != old, 10, "a new run in the view")
    assert k.eval("w3.run.name") == "again" and k.eval("w3.run.wait(10)") == "completed"
    assert k.eval(f"views().of_run({old!r}) is None"), "the old run is no longer held by the view"
    assert k.eval("views().of_run(w3.run.id) is w3")
    wait_for(lambda: k.eval("w3.info['id']") == k.eval("w3.run.id"), 5, "the view's info to follow")


@pytest.mark.kernel
def test_flood_widget_traffic_is_bounded(k: Kernel) -> None:
    """200,000 lines: every update is small, and the tail is sent at most ~10 times a second."""
    k.ok("rf = runstop_nb.start(['python', 'agents/flood.py', '--lines', '200000'], name='flood')\n"
         "wf = view_for(rf)\ndisplay(wf)")
    model = k.eval("wf.model_id")
    t0 = time.monotonic()
    reply = k.ok("rf.wait(60)\nimport time; time.sleep(0.5)")
    span = time.monotonic() - t0
    updates = [m for m in reply.comm_msgs if m["content"]["comm_id"] == model and m["msg_type"] == "comm_msg"]
    tails = [m for m in updates if "tail" in m["content"]["data"].get("state", {})]
    sizes = [len(json.dumps(m["content"])) for m in updates]
    assert k.eval("rf.status") == "completed" and k.eval("rf.lines") == 200_000
    assert tails, "the tail was sent"
    assert max(sizes) <= 64 * 1024
    assert len(tails) <= 10 * span + 3
    sent = sorted(m["header"]["date"].timestamp() for m in tails)
    busiest = max(sum(1 for u in sent if t - 1.0 < u <= t) for t in sent)
    assert busiest <= 10, f"{busiest} tail updates within one second, the final frame included"
    assert sum(sizes) <= 3_000_000
    text = "".join(o["text"] for o in tails[-1]["content"]["data"]["state"]["tail"])
    assert "000199999" in text, "the final frame shows the end of the output"
    assert text.count("\n") <= 202


@pytest.mark.kernel
def test_a_sleeping_run_costs_no_message(k: Kernel) -> None:
    """Once shown, a run where nothing happens sends nothing: its clock ticks in the browser."""
    k.ok("rz = runstop_nb.start(['sleep', '1000'], name='sleepy')\ndisplay(view_for(rz))")
    model = k.eval("view_for(rz).model_id")
    wait_for(lambda: k.eval("view_for(rz).stats") != "", 10, "the first tree stats")
    time.sleep(1.5)  # the first frames and samples settle
    msgs = [m for m in drain_iopub(k, 4.0) if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model]
    assert msgs == [], [m["content"]["data"] for m in msgs]
    k.ok("rz.stop(grace=0.2)")


@pytest.mark.kernel
def test_the_pulse_beats_for_the_whole_kernel(k: Kernel) -> None:
    pulse = k.eval("view_for(runstop_nb.start(['sleep', '1000'], name='pulsed')).pulse")
    beats = [m for m in drain_iopub(k, 4.5) if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == pulse]
    assert 1 <= len(beats) <= 4, "one message every 1.5 s, whatever the number of views"
    assert k.eval("len({v.pulse for v in views().views()})") == 1
    k.ok("runstop_nb.get('pulsed').stop(grace=0.2)")


@pytest.mark.kernel
def test_running_a_cell_again_closes_the_models_it_showed(k: Kernel) -> None:
    cell = f"cell-{uuid.uuid4().hex}"
    k.ok("%load_ext runstop_nb")
    first = in_cell(k, "%%agent_run\ncell1: sleep 1000\ncell2: sleep 1000", cell)
    models = {c: n for c, n in opened(first).items() if n != "WidgetModel"}
    assert sorted(models.values()).count("AnyModel") == 3, "a grid and its two run views"
    assert len(models) == 6, "each with its Layout: 2 per run, 2 for the grid"
    second = in_cell(k, "%%agent_run\ncell1: sleep 1000\ncell2: sleep 1000", cell)
    assert set(models) <= closed(second), "every model the cell showed before is closed"
    again = {c: n for c, n in opened(second).items() if n != "WidgetModel"}
    assert len(again) == 6
    k.ok("runstop_nb.stop_all(grace=0.2)")


@pytest.mark.kernel
def test_a_run_can_be_shown_again_by_get(k: Kernel) -> None:
    """After its cell output is cleared, a Run displays as its view again, with its tail."""
    k.ok("rg = runstop_nb.start(['sh', '-c', 'echo shown-again; sleep 1000'], name='again-shown')")
    wait_for(lambda: "shown-again" in k.eval("rg.output()"), 10, "output")
    reply = k.ok("runstop_nb.get('again-shown')")
    assert any(WIDGET in d for d in reply.data)
    wait_for(lambda: "shown-again" in k.eval("''.join(o['text'] for o in view_for(rg).tail)"), 10,
             "the tail in the view")
    k.ok("rg.stop(grace=0.5)")


@pytest.mark.kernel
def test_dashboard_lists_every_run_and_stops_all(k: Kernel) -> None:
    k.ok("for i in range(3):\n    runstop_nb.start(['sleep', '1000'], name=f'dash{i}')\n"
         "d = runstop_nb.dashboard()\ndisplay(d)")
    names = k.eval("[r['name'] for r in d.rows]")
    assert {"dash0", "dash1", "dash2"} <= set(names)
    k.ok("runstop_nb.start(['sleep', '1000'], name='dash-late')")
    wait_for(lambda: "dash-late" in k.eval("[r['name'] for r in d.rows]"), 5, "a run started later to appear")
    starts = k.eval("[r['started'] for r in d.rows]")
    assert starts == sorted(starts), "sorted by start"
    cookies = k.eval("[r.spec.cookie for r in runstop_nb.runs() if not r.done]")
    send(k, "d", do="stop_all")
    wait_for(lambda: k.eval("[r.name for r in runstop_nb.runs() if not r.done]") == [], 15, "stop all")
    assert all(cookie_alive(c) == [] for c in cookies)
    wait_for(lambda: all(r["done"] for r in k.eval("d.rows")), 5, "the rows to say so")


@pytest.mark.kernel
def test_a_table_row_opens_its_run_view_below(k: Kernel) -> None:
    k.ok("ro = runstop_nb.start(['sleep', '1000'], name='opened')\nb = runstop_nb.dashboard()\ndisplay(b)")
    run_id = k.eval("ro.id")
    send(k, "b", do="open", id=run_id)
    wait_for(lambda: k.eval("b.detail") != "", 5, "the run view below the table")
    assert k.eval(f"b.detail == views().of_run({run_id!r}).model_id")
    send(k, "b", do="stop", id=run_id)
    wait_for(lambda: k.eval("ro.status") == "cancelled", 10, "the row's Stop")
    send(k, "b", do="open", id=None)
    wait_for(lambda: k.eval("b.detail") == "", 5, "the view to close")


@pytest.mark.kernel
def test_past_run_shows_as_a_read_only_view(k: Kernel) -> None:
    k.ok("rp = runstop_nb.start(['sh', '-c', 'echo from-the-past'], name='past')\nrp.wait(10)")
    reply = k.ok("pw = RunWidget(runstop_nb.load(rp.id))\nrunstop_nb.load(rp.id)")
    assert any(WIDGET in d for d in reply.data)
    wait_for(lambda: k.eval("pw.state['status']") == "completed", 5, "the state")
    assert k.eval("pw.info['readonly']") is True and k.eval("pw.info['live']") is False
    wait_for(lambda: "from-the-past" in k.eval("''.join(o['text'] for o in pw.tail)"), 5, "the tail")


AGENT_SETUP = """
from tests.fakerun import FakeRun, card, summary
fr = FakeRun(stdin_open=True, agent=summary(), card_list=[card(1, body='hello'), card(2, kind='tool', body='ls',
             full=5000, detail='a\\nb')], full_texts={'c2': 'L' * 5000})
fr.buffer.feed('stdout', '{"type": "raw"}\\n')
wa = RunWidget(fr)
display(wa)
"""


@pytest.mark.kernel
def test_agent_cards_show_all_stdin_and_ctrl_c(k: Kernel) -> None:
    k.ok("import sys; sys.path.insert(0, '..')\n" + AGENT_SETUP)
    wait_for(lambda: len(k.eval("wa.cards")) == 2, 5, "the cards")
    cards = k.eval("wa.cards")
    assert cards[1]["kind"] == "tool" and cards[1]["cut"] is True and cards[1]["detail"] == "a\nb"
    assert k.eval("wa.agent['tool_calls']") == 5 and k.eval("wa.state['stdin']") is True
    model = k.eval("wa.model_id")
    send(k, "wa", do="card", id="c2", req="r1")
    replies = [m for m in drain_iopub(k, 1.0) if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model
               and m["content"]["data"].get("method") == "custom"]
    assert replies and replies[0]["content"]["data"]["content"] == {"reply": "r1", "text": "L" * 5000}
    send(k, "wa", do="send", text="yes")
    send(k, "wa", do="interrupt")
    wait_for(lambda: k.eval("(fr.sent, fr.interrupts)") == (["yes\n"], 1), 5, "the line and the Ctrl+C")
    k.ok("fr.send_error = OSError('stdin is closed')")
    send(k, "wa", do="send", text="more")
    wait_for(lambda: k.eval("wa.notice") == "send failed: OSError: stdin is closed", 5, "a one-line error")


@pytest.mark.kernel
def test_worktree_files_and_the_diff_on_demand(k: Kernel) -> None:
    k.ok("from runstop_nb._worktree import FileChange, Worktree\n"
         "fw = FakeRun(name='wt', id='wt00000001', format='text', worktree=Worktree('/tmp/w', 'runstop/wt', 'a' * 40, '/tmp'),"
         " changes=[FileChange('a.py', 2, 1, 'modified')], diff_text='+x\\n' * 100_000)\n"
         "ww = RunWidget(fw)\ndisplay(ww)")
    wait_for(lambda: k.eval("ww.files") == [{"path": "a.py", "added": 2, "removed": 1, "status": "modified",
                                             "old_path": None}], 5, "the file list")
    model = k.eval("ww.model_id")
    send(k, "ww", do="diff", req="d1")
    replies = [m for m in drain_iopub(k, 2.0) if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model
               and m["content"]["data"].get("method") == "custom"]
    text = replies[0]["content"]["data"]["content"]["text"]
    assert text.startswith("+x\n") and "the diff cut at 200,000 of 300,000 characters" in text
