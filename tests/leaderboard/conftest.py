"""Fixtures for the leaderboard tests: real result files, and a headless Chromium over the DevTools protocol.

The browser driver is a few dozen lines over Chromium's DevTools protocol
(``--remote-debugging-port`` + the ``websocket-client`` package): Debian's
``chromium``, no browser download, no external requests.
"""

from __future__ import annotations

import base64
import copy
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--disable-default-apps", "--mute-audio", "--remote-debugging-port=0",
                 "--remote-allow-origins=*", "--window-size=1280,1600"]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


from leaderboard.aggregate import row_of

# ------------------------------------------------------------------ real results
@pytest.fixture(scope="session")
def digits_results(tmp_path_factory) -> Path:
    """A results/ folder with real results of the digits track: ERM and PGD-AT, a few epochs each.

    Trained and evaluated through bench.pipeline like ``xrobust run`` does
    (shortened budget and subset so the session fixture takes ~15 s).
    """
    import torch

    from bench.pipeline import eval_track, train_track
    from bench.registry import load_domains
    from bench.tracks import get_track

    torch.set_num_threads(1)
    load_domains()
    track = get_track("image-digits-linf-0.2")
    base = tmp_path_factory.mktemp("lb")
    results, runs = base / "results", base / "runs"
    for recipe in ("erm", "pgd-at"):
        ckpt = train_track(track, recipe, epochs=4, seed=0, runs=runs, device="cpu", progress=False,
                           log=lambda *_: None)
        eval_track(track, ckpt, seed=0, results=results, n=60, device="cpu", progress=False)
    return results


XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="session")
def xss_frame(digits_results):
    """A real result whose untrusted strings (model, attack, flag, device, commit) are all markup."""
    doc = json.loads((digits_results / "image/digits/linf-0.2/smallcnn__pgd-at.json").read_text())
    doc = copy.deepcopy(doc)
    doc["model"] = XSS
    doc["metrics"]["per_attack"]['<img src=x onerror="alert(2)">'] = doc["metrics"]["per_attack"]["apgd-ce"]
    doc["flags"]["zero-gradients"] = {"value": 0.5, "raised": True, "explanation": "</span><script>alert(3)</script>"}
    doc["provenance"]["device"] = "cpu <b>bold</b> & \"quoted\" 'x'"
    doc["provenance"]["git_commit"] = '"><svg onload=alert(4)>'
    row = row_of(doc, "x.json")
    row["rank"] = 1
    return pd.DataFrame([row])


# ------------------------------------------------------------------ browser
class Browser:
    """A headless Chromium page driven over the DevTools protocol (JSON messages over a websocket)."""

    def __init__(self, binary: str, profile: Path):
        import websocket  # websocket-client

        self.proc = subprocess.Popen([binary, *CHROMIUM_ARGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)  # its helpers share our child's process group
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = []
        while not targets:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if time.monotonic() > deadline:
                raise RuntimeError("chromium has no page target")
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            self.events.append(msg)
        raise TimeoutError(method)

    def goto(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the first element matching ``selector``."""
        box = self.js(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.scrollIntoView();"
                      " const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, failed loads and CSP violations seen since the last goto."""
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                out.append(f"network: {p.get('errorText')} {p.get('blockedReason', '')}")
        return out

    def requests(self) -> list[str]:
        return [ev["params"]["request"]["url"] for ev in self.events if ev.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        import signal

        for sig in (signal.SIGTERM, signal.SIGKILL):  # the browser we started and its helper processes
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium); .ci/run installs it")
    pytest.importorskip("websocket", reason="websocket-client not installed (pip install xrobust[test])")
    # helpers may still flush into the profile while exiting: a leftover file must not fail the test
    with tempfile.TemporaryDirectory(prefix="xrobust-chromium-", ignore_cleanup_errors=True) as profile:
        b = Browser(binary, Path(profile))
        try:
            yield b
        finally:
            b.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def serve():
    """``serve(folder) -> base URL``: a loopback HTTP server for a built site, shut down after the test."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()
