"""The OpenAI Videos API through the official `openai` Python SDK, plus the parts the SDK does not
cover (Range requests, thumbnails, server-sent events, cancel, metrics)."""
import json
import warnings

import openai

from common import KEY, SLOW, TINY, URL, client, create, host_port, jrequest, request, wait_for

warnings.filterwarnings("ignore", category=DeprecationWarning)

EXTRA = {"num_frames": TINY["num_frames"], "steps": TINY["steps"], "seed": 42}


def test_sdk_create_poll_download():
    c = client()
    v = c.videos.create(prompt="a lighthouse in a storm", size=TINY["size"], extra_body=EXTRA)
    assert v.object == "video" and v.id.startswith("video_") and len(v.id) == 38
    assert v.status in ("queued", "in_progress") and v.size == "48x32"
    assert v.model == "tiny-wan22-t2v"
    done = c.videos.poll(v.id, poll_interval_ms=50)
    assert done.status == "completed", done
    assert done.progress == 100 and done.completed_at >= done.created_at
    r = c.videos.retrieve(v.id)
    assert r.id == v.id and r.status == "completed" and r.prompt == "a lighthouse in a storm"
    extra = r.model_extra or {}
    assert extra.get("num_frames") == 5 and extra.get("steps") == 2 and extra.get("seed") == "42"
    mp4 = c.videos.download_content(v.id).content
    assert len(mp4) > 100 and mp4[4:8] == b"ftyp", mp4[:16]
    png = c.videos.download_content(v.id, variant="thumbnail").content
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    sheet = c.videos.download_content(v.id, variant="spritesheet").content
    assert sheet[:8] == b"\x89PNG\r\n\x1a\n"


def test_sdk_list_paginates():
    c = client()
    ids = [c.videos.create(prompt="clip %d" % i, size=TINY["size"], extra_body=EXTRA).id for i in range(3)]
    page = c.videos.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [v.id for v in page.data] == ids[::-1][:2]  # newest first
    seen = [v.id for v in c.videos.list(limit=2)]  # the SDK follows `after` through every page
    assert len(seen) == len(set(seen))
    for i in ids:
        assert i in seen
    asc = c.videos.list(limit=100, order="asc")
    order = [v.id for v in asc.data]
    assert order.index(ids[0]) < order.index(ids[1]) < order.index(ids[2])
    for i in ids:
        wait_for(i)


def test_sdk_delete_and_errors():
    c = client()
    v = c.videos.create(prompt="to be deleted", size=TINY["size"], extra_body=EXTRA)
    c.videos.poll(v.id, poll_interval_ms=50)
    d = c.videos.delete(v.id)
    assert d.id == v.id and d.deleted and d.object == "video.deleted"
    try:
        c.videos.retrieve(v.id)
        assert False, "retrieve after delete"
    except openai.NotFoundError as e:
        assert e.status_code == 404
    try:
        c.videos.download_content(v.id)
        assert False, "download after delete"
    except openai.NotFoundError:
        pass
    try:
        c.videos.create(prompt="bad size", size="48by32")
        assert False, "bad size accepted"
    except openai.BadRequestError as e:
        assert e.body and e.body.get("param") == "size", e.body


def test_json_and_urlencoded_bodies():
    s, v = jrequest("POST", "/v1/videos", {"prompt": "json body", "size": "48x32", "num_frames": 5, "steps": 2,
                                           "guidance_scale": 3.5, "guidance_scale_2": 2.0, "sampler": "unipc",
                                           "negative_prompt": "blurry", "fps": 8})
    assert s == 200, v
    assert v["guidance_scale"] == 3.5 and v["guidance_scale_2"] == 2.0 and v["sampler"] == "unipc"
    assert v["negative_prompt"] == "blurry" and v["fps"] == 8 and v["seconds"] == "0.625"
    s, h, body = request("POST", "/v1/videos", b"prompt=form+body&size=48x32&num_frames=5&steps=2",
                         {"Content-Type": "application/x-www-form-urlencoded"})
    assert s == 200, body
    v2 = json.loads(body)
    assert v2["prompt"] == "form body"
    # seconds -> frames at the clip's fps, rounded to 4k+1 as the pipeline does
    s, v3 = jrequest("POST", "/v1/videos", {"prompt": "secs", "size": "48x32", "seconds": "1", "fps": 4,
                                            "steps": 2})
    assert s == 200 and v3["num_frames"] == 5 and v3["seconds"] == "1", v3
    for x in (v, v2, v3):
        assert wait_for(x["id"])["status"] == "completed"


def test_range_requests():
    v = wait_for(create()["id"])
    path = "/v1/videos/%s/content" % v["id"]
    s, h, full = request("GET", path)
    assert s == 200 and h["content-type"] == "video/mp4" and h["accept-ranges"] == "bytes"
    n = len(full)
    s, h, part = request("GET", path, headers={"Range": "bytes=0-99"})
    assert s == 206 and part == full[:100] and h["content-range"] == "bytes 0-99/%d" % n
    s, h, part = request("GET", path, headers={"Range": "bytes=-10"})
    assert s == 206 and part == full[-10:]
    s, h, part = request("GET", path, headers={"Range": "bytes=50-"})
    assert s == 206 and part == full[50:]
    s, h, part = request("GET", path, headers={"Range": "bytes=%d-" % (n + 10)})
    assert s == 416 and h["content-range"] == "bytes */%d" % n
    s, h, part = request("GET", path, headers={"Range": "bytes=0-1,5-6"})  # several ranges: the whole file
    assert s == 200 and part == full
    s, h, part = request("HEAD", path)
    assert s == 200 and part == b"" and int(h["content-length"]) == n


def read_events(vid, timeout=60, on_first=None):
    """Reads /events until the stream ends; returns the list of (event, data) pairs. on_first() is
    called once the first event has arrived."""
    import http.client
    h, p = host_port(URL)
    conn = http.client.HTTPConnection(h, p, timeout=timeout)
    conn.request("GET", "/v1/videos/%s/events" % vid, headers={"Authorization": "Bearer " + KEY} if KEY else {})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    events, ev, data = [], None, []
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            ev = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and ev:
            events.append((ev, json.loads("\n".join(data))))
            ev, data = None, []
            if on_first and len(events) == 1:
                on_first()
    conn.close()
    return events


def test_server_sent_events():
    # the job waits behind a slow one until the stream is open, then the slow one is cancelled
    blocker = create(SLOW)
    v = create({"steps": 4})
    events = read_events(v["id"], on_first=lambda: jrequest("POST", "/v1/videos/%s/cancel" % blocker["id"]))
    names = [e for e, _ in events]
    assert names[0] == "queued" and names[-1] == "completed", names
    stages = {d.get("stage") for e, d in events if e == "in_progress"}
    assert "denoise" in stages, stages
    # events carry the latest state, so a fast step may be folded into the next event
    steps = [d["step"] for e, d in events if e == "in_progress" and d.get("stage") == "denoise"]
    assert steps and steps == sorted(steps) and max(steps) <= 4 and all(d["n_steps"] == 4 for e, d in events
                                                                        if d.get("stage") == "denoise"), steps
    experts = {d["expert"] for e, d in events if e == "in_progress" and d.get("stage") == "denoise"}
    assert experts <= {0, 1} and experts, experts
    assert any("eta_seconds" in d for e, d in events if e == "in_progress")
    progress = [d["progress"] for _, d in events]
    assert progress == sorted(progress) and progress[-1] == 100, progress


def test_cancel_and_delete_running():
    # A job long enough to be caught running: 48 steps on a larger clip.
    a = create(SLOW)
    b = create()  # queued behind a
    wait_for(a["id"], ("in_progress",))
    s, c = jrequest("POST", "/v1/videos/%s/cancel" % b["id"])
    assert s == 200 and c["status"] == "failed" and c["error"]["code"] == "cancelled", c
    s, c = jrequest("POST", "/v1/videos/%s/cancel" % a["id"])
    assert s == 200
    a2 = wait_for(a["id"])
    assert a2["status"] == "failed" and a2["error"]["code"] == "cancelled", a2
    s, c = jrequest("POST", "/v1/videos/%s/cancel" % a["id"])
    assert s == 409, c
    # deleting a running job cancels it and removes it at once
    d = create(SLOW)
    wait_for(d["id"], ("in_progress",))
    s, r = jrequest("DELETE", "/v1/videos/" + d["id"])
    assert s == 200 and r["deleted"] is True
    s, r = jrequest("GET", "/v1/videos/" + d["id"])
    assert s == 404 and r["error"]["code"] == "not_found"
    # the worker is free again
    assert wait_for(create()["id"])["status"] == "completed"


def test_content_not_ready_and_unknown():
    a = create(SLOW)
    s, r = jrequest("GET", "/v1/videos/%s/content" % a["id"])
    assert s == 409 and r["error"]["code"] == "video_not_ready", r
    jrequest("DELETE", "/v1/videos/" + a["id"])
    s, r = jrequest("GET", "/v1/videos/video_" + "0" * 32)
    assert s == 404 and r["error"]["type"] == "invalid_request_error"
    s, r = jrequest("GET", "/v1/videos/../../etc/passwd")
    assert s == 404
    s, r = jrequest("GET", "/v1/videos/%s/content?variant=gif" % a["id"])
    assert s in (400, 404)


def test_health_and_metrics():
    s, h = jrequest("GET", "/health", key="")
    assert s == 200 and h["status"] == "ok" and h["model"] == "tiny-wan22-t2v"
    s, hdrs, body = request("GET", "/metrics")
    assert s == 200 and hdrs["content-type"].startswith("text/plain")
    text = body.decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, val = line.rsplit(" ", 1)
            values[k] = float(val)
    for k in ("wan_queue_depth", 'wan_jobs{state="completed"}', "wan_step_seconds_count", "wan_step_seconds_sum",
              "wan_memory_peak_bytes", "wan_jobs_created_total", "wan_http_requests_total"):
        assert k in values, k
    assert values["wan_step_seconds_count"] > 0 and values['wan_step_seconds_bucket{le="+Inf"}'] == \
        values["wan_step_seconds_count"]
    assert values['wan_jobs{state="completed"}'] >= 1 and values["wan_memory_peak_bytes"] > 0


def test_page_served():
    s, h, body = request("GET", "/", key="")
    assert s == 200 and h["content-type"].startswith("text/html")
    page = body.decode()
    for ident in ('id="prompt"', 'id="negative"', 'id="generate"', 'id="player"', 'id="gallery"', 'id="bar"'):
        assert ident in page, ident
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no CDN
