"""LoRA adapters in requests: `wan serve --lora-dir` with the adapters of tests/fixtures/lora (made for the
tiny t2v model). A job with an adapter changes the frames, jobs with and without one run side by side
without interfering, bad names are 400s, and a job's adapters survive a restart (kill -9 included)."""
import json
import os
import signal
import tempfile

from common import SLOW, TINY, TMP, Server, create, jrequest, request, wait_for

LORA_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "lora"))
LORA = {"name": "peft_high.safetensors", "scale": 1.0, "target": "both"}
SAME = {"prompt": "a red ball bouncing", "seed": 3}  # plus TINY (create adds it)


def error_of(status, body, want_status=400):
    assert status == want_status, (status, body)
    e = body["error"]
    assert set(e) >= {"message", "type", "param", "code"} and e["type"] == "invalid_request_error", e
    return e


def sheet(vid, url):
    """The job's spritesheet (PNG of its frames) and MP4."""
    s, h, png = request("GET", "/v1/videos/%s/content?variant=spritesheet" % vid, url=url, key="")
    assert s == 200 and png[:8] == b"\x89PNG\r\n\x1a\n", s
    s, h, mp4 = request("GET", "/v1/videos/%s/content" % vid, url=url, key="")
    assert s == 200 and mp4[4:8] == b"ftyp"
    return png, mp4


def test_loras_need_lora_dir():
    # the server under test runs without --lora-dir
    s, v = jrequest("POST", "/v1/videos", dict(TINY, prompt="x", loras=[LORA]))
    e = error_of(s, v)
    assert e["param"] == "loras" and e["code"] == "loras_disabled" and "--lora-dir" in e["message"], e
    s, lst = jrequest("GET", "/v1/loras")
    assert s == 200 and lst["enabled"] is False and lst["data"] == [], lst
    s, h, body = request("GET", "/", key="")
    assert s == 200 and b'id="lora"' in body and b"/v1/loras" in body
    # a job without adapters reports an empty list
    v = create()
    assert v["loras"] == [], v


def test_lora_requests():
    d = os.path.join(tempfile.mkdtemp(dir=TMP, prefix="lora-"), "data")
    srv = Server(d, "--lora-dir", LORA_DIR, "--workers", "2").start()
    u = srv.url
    try:
        s, lst = jrequest("GET", "/v1/loras", url=u, key="")
        names = [x["name"] for x in lst["data"]]
        assert s == 200 and lst["enabled"] is True and "peft_high.safetensors" in names, lst
        assert names == sorted(names) and all(x["bytes"] > 0 for x in lst["data"])

        bad = [
            ([{"name": "../x"}], "invalid_lora_name"),
            ([{"name": "../lora/peft_high.safetensors"}], "invalid_lora_name"),
            ([{"name": "sub/x.safetensors"}], "invalid_lora_name"),
            ([{"name": ".."}], "invalid_lora_name"),
            ([{"name": ".hidden.safetensors"}], "invalid_lora_name"),
            ([{"name": "meta.json"}], "invalid_lora_name"),
            ([{"name": "missing.safetensors"}], "lora_not_found"),
            ([{"name": "embeds.safetensors"}], "invalid_lora"),  # a safetensors file that is no adapter
            ([{"name": "peft_high.safetensors", "target": "middle"}], "invalid_value"),
            ([{"name": "peft_high.safetensors", "scale": "strong"}], "invalid_value"),
            ([{"name": "peft_high.safetensors", "weight": 1}], "unknown_parameter"),
            ([{"scale": 1}], "missing_required_parameter"),
            ([LORA] * 9, "invalid_value"),
            ({"name": "peft_high.safetensors"}, "invalid_type"),
            ("peft_high.safetensors", "invalid_json"),
        ]
        for loras, code in bad:
            s, v = jrequest("POST", "/v1/videos", dict(TINY, prompt="x", loras=loras), url=u, key="")
            e = error_of(s, v)
            assert e["param"] == "loras" and e["code"] == code, (loras, e)
            assert LORA_DIR not in e["message"], e  # the server's folder stays private

        # the same clip without, with, and again without the adapter, run two at a time
        base = create(SAME, url=u, key="")
        withl = create(dict(SAME, loras=[LORA]), url=u, key="")
        base2 = create(SAME, url=u, key="")
        assert withl["loras"] == [LORA] and base["loras"] == [], withl
        # a form body carries `loras` as a JSON string
        form = ("--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nform\r\n"
                "--b\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n48x32\r\n"
                "--b\r\nContent-Disposition: form-data; name=\"num_frames\"\r\n\r\n5\r\n"
                "--b\r\nContent-Disposition: form-data; name=\"steps\"\r\n\r\n2\r\n"
                "--b\r\nContent-Disposition: form-data; name=\"loras\"\r\n\r\n"
                "[{\"name\": \"kohya_low.safetensors\", \"scale\": 0.5, \"target\": \"low\"}]\r\n--b--\r\n")
        s, h, body = request("POST", "/v1/videos", form.encode(),
                             {"Content-Type": "multipart/form-data; boundary=b"}, url=u, key="")
        assert s == 200, body
        fv = json.loads(body)
        assert fv["loras"] == [{"name": "kohya_low.safetensors", "scale": 0.5, "target": "low"}], fv
        for v in (base, withl, base2, fv):
            assert wait_for(v["id"], url=u, key="")["status"] == "completed", v
        png0, mp40 = sheet(base["id"], u)
        png1, mp41 = sheet(withl["id"], u)
        png2, mp42 = sheet(base2["id"], u)
        assert png0 == png2 and mp40 == mp42, "a job with a LoRA running beside it changed a job without one"
        assert png1 != png0 and mp41 != mp40, "the LoRA did not change the frames"

        # restart: the completed job keeps its adapters; a queued one interrupted by kill -9 runs again with them
        assert srv.stop() == 0
        srv.args = ["--lora-dir", LORA_DIR]  # one worker, so that a job can wait behind a slow one
        srv.start()
        u = srv.url
        s, v = jrequest("GET", "/v1/videos/" + withl["id"], url=u, key="")
        assert s == 200 and v["status"] == "completed" and v["loras"] == [LORA], v
        slow = create(SLOW, url=u, key="")
        again = create(dict(SAME, loras=[LORA]), url=u, key="")
        wait_for(slow["id"], ("in_progress",), url=u, key="")
        srv.stop(signal.SIGKILL)
        with open(os.path.join(d, "jobs", again["id"] + ".json")) as f:
            assert json.load(f)["params"]["loras"] == [LORA]
        srv.start()
        u = srv.url
        jrequest("DELETE", "/v1/videos/" + slow["id"], url=u, key="")
        v = wait_for(again["id"], url=u, key="")
        assert v["status"] == "completed" and v["loras"] == [LORA], v
        png3, mp43 = sheet(again["id"], u)
        assert png3 == png1, "the restarted job did not run with the same adapter"
    finally:
        if srv.proc:
            assert srv.stop() == 0
    srv.check_clean_log()
