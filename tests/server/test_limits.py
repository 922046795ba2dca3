"""Authentication and request bounds: every endpoint but /health (and the static page) needs the key;
oversized or malformed requests get clear 4xx errors in OpenAI's error shape."""
import json
import os
import re
import subprocess
import socket
import tempfile

from common import KEY, MODEL, SLOW, TINY, TMP, WAN, Server, Skip, create, host_port, jrequest, request


def error_of(body):
    import json
    e = json.loads(body)["error"]
    assert set(e) >= {"message", "type", "param", "code"}, e
    return e


def test_api_key_required():
    if not KEY:
        raise Skip("the server under test runs without an API key")
    vid = create()["id"]
    for method, path in (("GET", "/v1/videos"), ("GET", "/v1/videos/" + vid), ("POST", "/v1/videos"),
                         ("DELETE", "/v1/videos/" + vid), ("GET", "/v1/videos/%s/content" % vid),
                         ("GET", "/v1/videos/%s/events" % vid), ("GET", "/metrics"),
                         ("POST", "/v1/videos/%s/cancel" % vid)):
        for key in ("", "wrong-key", KEY + "x", KEY[:-1]):
            s, h, body = request(method, path, b"{}" if method == "POST" else None, key=key)
            assert s == 401, (method, path, key, s)
            assert error_of(body)["code"] == "invalid_api_key" and h.get("www-authenticate") == "Bearer"
    s, h, body = request("GET", "/v1/videos", headers={"Authorization": "bearer " + KEY}, key="")
    assert s == 200  # the scheme is case-insensitive
    s, h, body = request("GET", "/v1/videos", headers={"Authorization": "Basic " + KEY}, key="")
    assert s == 401
    assert request("GET", "/health", key="")[0] == 200


def test_request_bounds():
    # the driver starts the server with --max-frames 33 --max-pixels 16384 --max-prompt 2000
    cases = [
        ({"prompt": "x" * 2001}, 400, "prompt"),
        ({"prompt": "ok", "num_frames": 37}, 400, "num_frames"),
        ({"prompt": "ok", "seconds": "60", "num_frames": None}, 400, "seconds"),
        ({"prompt": "ok", "size": "256x128"}, 400, "size"),
        ({"prompt": "ok", "num_frames": None}, 200, None),  # frames default to the limit
        ({"prompt": "ok", "size": "8x8"}, 400, "size"),
        ({"prompt": "ok", "steps": 0}, 400, "steps"),
        ({"prompt": "ok", "steps": 1000}, 400, "steps"),
        ({"prompt": "ok", "guidance_scale": -1}, 400, "guidance_scale"),
        ({"prompt": "ok", "sampler": "ddim"}, 400, "sampler"),
        ({"prompt": "ok", "seed": -5}, 400, "seed"),
        ({"prompt": "ok", "seed": "12abc"}, 400, "seed"),
        ({"prompt": "ok", "fps": 0}, 400, "fps"),
        ({"prompt": "ok", "frobnicate": 1}, 400, "frobnicate"),
        ({"prompt": "ok", "input_reference": {"image_url": "x"}}, 400, "input_reference"),
        ({"prompt": "   "}, 400, "prompt"),
        ({"prompt": None}, 400, "prompt"),
        ({"prompt": ["a"]}, 400, "prompt"),
    ]
    for body, status, param in cases:
        body = {k: v for k, v in dict(TINY, **body).items() if v is not None}
        s, h, data = request("POST", "/v1/videos", body)
        assert s == status, (body, s, data)
        if status == 200:
            v = json.loads(data)
            assert v["num_frames"] == 33, v
            jrequest("DELETE", "/v1/videos/" + v["id"])
            continue
        e = error_of(data)
        assert e["param"] == param and e["type"] == "invalid_request_error" and e["message"], (body, e)


def test_malformed_bodies():
    s, h, data = request("POST", "/v1/videos", b"{not json", {"Content-Type": "application/json"})
    assert s == 400 and error_of(data)["code"] == "invalid_json"
    s, h, data = request("POST", "/v1/videos", b"[1,2]", {"Content-Type": "application/json"})
    assert s == 400
    s, h, data = request("POST", "/v1/videos", b"prompt", {"Content-Type": "text/plain"})
    assert s == 415
    s, h, data = request("POST", "/v1/videos", b"--x\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi",
                         {"Content-Type": "multipart/form-data; boundary=x"})
    assert s == 400 and error_of(data)["code"] == "invalid_multipart"
    mp = (b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nhi\r\n"
          b"--b\r\nContent-Disposition: form-data; name=\"input_reference\"; filename=\"a.png\"\r\n"
          b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--b--\r\n")
    s, h, data = request("POST", "/v1/videos", mp, {"Content-Type": "multipart/form-data; boundary=b"})
    assert s == 400 and error_of(data)["param"] == "input_reference"


def raw_http(head, chunks=()):
    """Sends a hand-made request (head: the request line and headers) and returns (status, body)."""
    h, p = host_port()
    sock = socket.create_connection((h, p), timeout=30)
    auth = "Authorization: Bearer %s\r\n" % KEY if KEY else ""
    sock.sendall(head.replace("\r\n\r\n", "\r\n" + auth + "\r\n", 1).encode())
    for c in chunks:
        sock.sendall(c)
    data = b""
    while True:
        got = sock.recv(65536)
        if not got:
            break
        data += got
        if b"\r\n\r\n" in data:
            hdr, body = data.split(b"\r\n\r\n", 1)
            m = re.search(rb"content-length: *(\d+)", hdr, re.I)
            if m and len(body) >= int(m.group(1)):
                break
    sock.close()
    hdr, body = data.split(b"\r\n\r\n", 1)
    return int(hdr.split()[1]), body


def test_body_too_large():
    # announced by Content-Length: refused before the body is sent
    s, body = raw_http("POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 2000000\r\n\r\n")
    assert s == 413 and error_of(body)["code"] == "request_too_large"
    # chunked, with no length up front: read, dropped, then refused
    piece = b"a" * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    s, body = raw_http("POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", [chunk] * 20 + [b"0\r\n\r\n"])
    assert s == 413 and error_of(body)["code"] == "request_too_large"


def test_routes():
    assert request("GET", "/nope")[0] == 404
    assert request("PUT", "/v1/videos")[0] == 405
    assert request("POST", "/v1/videos/video_" + "a" * 32)[0] == 405
    assert request("GET", "/v1/videos/video_" + "A" * 32)[0] == 404  # ids are lower-case hex only
    assert request("GET", "/v1/videos/video_" + "a" * 31)[0] == 404
    s, r = jrequest("GET", "/v1/videos?limit=0")
    assert s == 400 and r["error"]["param"] == "limit"
    s, r = jrequest("GET", "/v1/videos?order=sideways")
    assert s == 400
    s, r = jrequest("GET", "/v1/videos?after=video_" + "1" * 32)
    assert s == 404


def test_queue_full_and_loopback_default():
    d = tempfile.mkdtemp(dir=TMP, prefix="queue-")
    srv = Server(os.path.join(d, "data"), "--max-queue", "1").start()
    try:
        a = create(SLOW, url=srv.url, key="")
        s, r = jrequest("POST", "/v1/videos", {"prompt": "second", "size": "48x32"}, url=srv.url, key="")
        assert s == 429 and r["error"]["code"] == "queue_full", r
        jrequest("DELETE", "/v1/videos/" + a["id"], url=srv.url, key="")
        assert "http://127.0.0.1:" in srv.url
    finally:
        assert srv.stop() == 0
        srv.check_clean_log()
    # without --host the server binds to loopback
    p = subprocess.Popen([WAN, "serve", "--model", MODEL, "--port", "0", "--data-dir", os.path.join(d, "data2")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = p.stdout.readline().decode()
        assert re.search(r"listening on http://127\.0\.0\.1:\d+/", line), line
    finally:
        p.terminate()
        rc = p.wait(60)
        assert rc == 0, rc
        p.stdout.close()
