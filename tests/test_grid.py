"""Grids and the dashboard in a real kernel: their models, and Stop all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import cookie_alive, wait_for
from .kernel import Kernel, runstop_kernel
from .test_widget import opened, send

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    yield from runstop_kernel(tmp_path_factory.mktemp("ghome"),
                              "import runstop_nb\nfrom runstop_nb._grid import RunGrid\nfrom IPython.display import display")


def test_a_grid_adds_one_model_and_its_layout(k: Kernel) -> None:
    reply = k.ok("rs = [runstop_nb.start(['sleep', '1000'], name=f'g{i}') for i in range(3)]\n"
                 "g = RunGrid(rs, cols=3)\ndisplay(g)")
    models = [n for n in opened(reply.comm_msgs).values() if n != "WidgetModel"]
    assert sorted(models) == ["AnyModel"] * 4 + ["LayoutModel"] * 4, models
    assert k.eval("g.items") == k.eval("[c.model_id for c in g.children]")
    again = k.ok("g2 = RunGrid(rs)\ndisplay(g2)")
    assert sorted(opened(again.comm_msgs).values()) == ["AnyModel", "LayoutModel"], "the runs' views are reused"


def test_stop_all_stops_the_grids_runs_and_only_them(k: Kernel) -> None:
    k.ok("other = runstop_nb.start(['sleep', '1000'], name='outside')\n"
         "mine = [runstop_nb.start(['sleep', '1000'], name=f's{i}') for i in range(2)]\n"
         "gs = RunGrid(mine)\ndisplay(gs)")
    cookies = k.eval("[r.spec.cookie for r in mine]")
    send(k, "gs", do="stop_all")
    wait_for(lambda: k.eval("[r.status for r in mine]") == ["cancelled", "cancelled"], 15, "the grid's runs")
    assert all(cookie_alive(c) == [] for c in cookies)
    assert k.eval("other.status") == "running"
    k.ok("other.stop(grace=0.2)")


def test_placeholders_bind_as_their_agents_start(k: Kernel) -> None:
    k.ok("gp = RunGrid([None, None])\ndisplay(gp)\n"
         "gp.children[0].bind(runstop_nb.start(['sleep', '1000'], name='late0'))\n"
         "gp.children[1].failed_to_start('no such command: nope')")
    wait_for(lambda: k.eval("gp.children[0].state['status']") == "running", 5, "the bound view")
    assert k.eval("gp.children[1].state['status']") == "failed"
    assert k.eval("gp.children[1].notice") == "no such command: nope"
    k.ok("runstop_nb.get('late0').stop(grace=0.2)")
