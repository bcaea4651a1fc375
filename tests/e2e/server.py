"""One isolated Jupyter server (JupyterLab 4 or Notebook 7) for the browser tests.

Everything the server writes lives under one temp root: config, runtime (kernel
connection files), Lab settings and workspaces, IPython profile, and the runs home.
Every process it starts inherits ``RUNSTOP_E2E_TAG``, so cleanup can find exactly
them by their environment and kill them by pid, never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil

from ..helpers import kill_pids, pids_with

AGENTS = Path(__file__).resolve().parents[2] / "notebooks" / "agents"
TAG_VAR = "RUNSTOP_E2E_TAG"
COOKIE_VAR = "RUNSTOP_NB_COOKIE"

# Lab's news/update toasts can cover widgets and swallow clicks (docs/browser-tests.md), and windowing
# would drop off-screen outputs from the DOM. Notebook 7 reads the same settings dir.
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tagged_pids(tag: str) -> list[int]:
    """Live pids whose environment carries this server's tag (kernels, guards, agents)."""
    return pids_with(f"{TAG_VAR}={tag}\0".encode())




class JupyterServer:
    """``jupyter lab`` or ``jupyter notebook`` on a free loopback port, no token."""

    def __init__(self, frontend: str, log_path: Path) -> None:
        if frontend not in ("lab", "notebook"):
            raise ValueError(f"frontend must be 'lab' or 'notebook', not {frontend!r}")
        self.frontend = frontend
        self.tmp = Path(os.path.realpath(tempfile.mkdtemp(prefix=f"runstop-e2e-{frontend}-")))
        self.root = self.tmp / "nb"
        self.runtime = self.tmp / "runtime"
        self.home = self.tmp / "runstop-home"
        self.tag = uuid.uuid4().hex
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.children: set[int] = set()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> JupyterServer:
        self.root.mkdir(parents=True)
        # symlinks=True: bin/claude etc. are links to fake_agent.py, which finds its streams beside itself.
        shutil.copytree(AGENTS, self.root / "agents", symlinks=True)
        settings = self.tmp / "lab-settings"
        for rel, value in USER_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = dict(os.environ)
        env.pop("PYTEST_CURRENT_TEST", None)
        env.update({
            "JUPYTER_CONFIG_DIR": str(self.tmp / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "JUPYTER_DATA_DIR": str(self.tmp / "data"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.tmp / "workspaces"),
            "IPYTHONDIR": str(self.tmp / "ipython"),
            "RUNSTOP_NB_HOME": str(self.home),
            # Agents say "python": make that the interpreter under test.
            "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
            TAG_VAR: self.tag,
        })
        # The kernelspec the notebooks name (python3) must be this interpreter's ipykernel;
        # JUPYTER_DATA_DIR is private, so Jupyter falls back to the native kernel.
        args = [
            sys.executable, "-m", "jupyterlab" if self.frontend == "lab" else "notebook",
            "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", "--IdentityProvider.token=",
            "--PasswordIdentityProvider.hashed_password=", "--ServerApp.disable_check_xsrf=True",
            "--ServerApp.allow_root=True", f"--ServerApp.root_dir={self.root}",
            "--MappingKernelManager.cull_idle_timeout=0", "--ServerApp.shutdown_no_activity_timeout=0",
            "--ServerApp.jpserver_extensions={'jupyter_lsp': False}",
            "--expose-app-in-browser",
        ]
        if self.frontend == "lab":
            args += ["--LabApp.news_url=None",
                     "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.frontend} exited with {self.proc.returncode}; "
                                   f"see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter {self.frontend} not ready after {timeout} s; see {self.log_path}")
            time.sleep(0.2)

    def remember_children(self) -> None:
        """Record the server's descendants (kernels) so shutdown can kill them by pid."""
        if self.proc is None:
            return
        try:
            self.children |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.Error:
            pass

    def stop(self) -> None:
        """SIGTERM the server (it shuts its kernels down), then kill what remains, by pid."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.remember_children()
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            kill_pids(sorted(self.children))
            kill_pids(tagged_pids(self.tag))
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- REST -----------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def start_session(self, notebook: str) -> str:
        """Start the notebook's kernel before the page loads (the page attaches to it).

        Saves the 2-3 s a kernel takes to start, which otherwise follow the page load.
        """
        body = {"path": notebook, "type": "notebook", "name": notebook, "kernel": {"name": "python3"}}
        return str(self.api("POST", "/api/sessions", body)["kernel"]["id"])

    def kernel_id(self, notebook: str) -> str | None:
        for session in self.api("GET", "/api/sessions"):
            if session.get("path") == notebook and session.get("kernel"):
                return str(session["kernel"]["id"])
        return None

    def shutdown_sessions(self, notebook: str) -> None:
        for session in self.api("GET", "/api/sessions"):
            if session.get("path") == notebook:
                try:
                    self.api("DELETE", f"/api/sessions/{session['id']}")
                except (urllib.error.URLError, OSError):
                    pass

    def notebook_url(self, notebook: str) -> str:
        if self.frontend == "lab":
            # ?reset: never restore the tabs of earlier tests (hidden cells would match first).
            return f"{self.url}/lab/tree/{notebook}?reset"
        return f"{self.url}/notebooks/{notebook}"
