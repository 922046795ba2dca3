"""Helpers shared by the server tests: the server under test (started by tests/server_test.sh and
described by environment variables), raw HTTP on loopback, and extra servers that a test starts itself."""
import http.client
import json
import os
import re
import signal
import subprocess
import time

URL = os.environ.get("WAN_SERVER_URL", "http://127.0.0.1:8080")
KEY = os.environ.get("WAN_SERVER_KEY", "")
WAN = os.environ.get("WAN_BIN", "build/wan")
MODEL = os.environ.get("WAN_MODEL", "tests/fixtures/tiny-wan22-t2v")
TMP = os.environ.get("WAN_TMP", "/tmp")

# A small clip of the tiny fixture model (well under a second): 48x32 pixels, 5 frames, 2 steps.
TINY = {"size": "48x32", "num_frames": 5, "steps": 2}
# A job that stays running for a while (a second or more) so that a test can act on it mid-way.
SLOW = {"size": "32x32", "num_frames": 1, "steps": 100}


class Skip(Exception):
    """Raised by a test that cannot run here; the runner counts it as skipped."""


def host_port(url=URL):
    m = re.match(r"http://([^:/]+):(\d+)", url)
    assert m and m.group(1) == "127.0.0.1", "tests only talk to 127.0.0.1: " + url
    return m.group(1), int(m.group(2))


def request(method, path, body=None, headers=None, key=None, url=URL, timeout=30):
    """One HTTP request; returns (status, headers dict with lower-case names, body bytes)."""
    h, p = host_port(url)
    conn = http.client.HTTPConnection(h, p, timeout=timeout)
    hdrs = dict(headers or {})
    k = KEY if key is None else key
    if k:
        hdrs["Authorization"] = "Bearer " + k
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    conn.close()
    return out


def jrequest(method, path, body=None, **kw):
    status, hdrs, data = request(method, path, body, **kw)
    return status, json.loads(data) if data else None


def client(url=URL, key=None):
    import openai
    return openai.OpenAI(base_url=url + "/v1", api_key=(KEY if key is None else key) or "none",
                         max_retries=0, timeout=60)


def create(params=None, url=URL, key=None):
    body = {"prompt": "a red ball bouncing"}
    body.update(TINY)
    body.update(params or {})
    status, v = jrequest("POST", "/v1/videos", body, url=url, key=key)
    assert status == 200, (status, v)
    return v


def wait_for(vid, states=("completed", "failed"), timeout=120, url=URL, key=None):
    t0 = time.time()
    while True:
        status, v = jrequest("GET", "/v1/videos/" + vid, url=url, key=key)
        assert status == 200, (status, v)
        if v["status"] in states:
            return v
        assert v["status"] not in ("completed", "failed"), "%s ended before it was %s: %s" % (vid, states, v)
        assert time.time() - t0 < timeout, "timed out waiting for %s to be %s: %s" % (vid, states, v)
        time.sleep(0.05)


class Server:
    """A `wan serve` of its own on a free loopback port, for tests that restart or reconfigure it."""

    def __init__(self, data_dir, *args):
        self.data_dir = data_dir
        self.args = list(args)
        self.proc = None
        self.url = None
        self.log_path = os.path.join(data_dir + ".log")

    def start(self, timeout=60):
        self.log = open(self.log_path, "ab")
        # one thread per job: on a busy machine OpenMP threads spinning against other processes make the
        # tiny jobs ten times slower
        cmd = [WAN, "serve", "--model", MODEL, "--port", "0", "--data-dir", self.data_dir, "--threads", "1"] + self.args
        if "--host" not in self.args:
            cmd += ["--host", "127.0.0.1"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log)
        t0 = time.time()
        line = b""
        while b"listening on" not in line:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError("the server exited with %s; see %s" % (self.proc.returncode, self.log_path))
            assert time.time() - t0 < timeout, "the server did not start"
        self.url = re.search(rb"(http://[0-9.]+:\d+)", line).group(1).decode()
        return self

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends sig and waits; returns the exit code (negative for a signal)."""
        if not self.proc:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the server did not stop within %ds after signal %d" % (timeout, sig))
        self.proc.stdout.close()
        self.log.close()
        self.proc = None
        return rc

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def check_clean_log(self):
        text = self.log_text()
        for bad in ("LeakSanitizer", "AddressSanitizer", "runtime error:"):
            assert bad not in text, "sanitizer report in %s:\n%s" % (self.log_path, text[-4000:])
