"""Durability: after kill -9 in the middle of a job, a restart keeps completed jobs downloadable and runs
the interrupted and queued ones again; SIGTERM checkpoints the running job and exits cleanly."""
import os
import signal
import tempfile

from common import SLOW, TMP, Server, create, jrequest, request, wait_for



def test_kill9_mid_job_then_restart():
    d = os.path.join(tempfile.mkdtemp(dir=TMP, prefix="restart-"), "data")
    srv = Server(d).start()
    done = wait_for(create(url=srv.url, key="")["id"], url=srv.url, key="")
    assert done["status"] == "completed"
    s, h, mp4 = request("GET", "/v1/videos/%s/content" % done["id"], url=srv.url, key="")
    assert s == 200
    slow = create(SLOW, url=srv.url, key="")
    queued = create(url=srv.url, key="")
    wait_for(slow["id"], ("in_progress",), url=srv.url, key="")
    srv.stop(signal.SIGKILL)

    srv.start()
    try:
        s, v = jrequest("GET", "/v1/videos/" + done["id"], url=srv.url, key="")
        assert s == 200 and v["status"] == "completed"
        s, h, mp4b = request("GET", "/v1/videos/%s/content" % done["id"], url=srv.url, key="")
        assert s == 200 and mp4b == mp4
        s, lst = jrequest("GET", "/v1/videos?order=asc", url=srv.url, key="")
        assert [v["id"] for v in lst["data"]] == [done["id"], slow["id"], queued["id"]]
        for vid in (slow["id"], queued["id"]):
            v = wait_for(vid, timeout=120, url=srv.url, key="")
            assert v["status"] == "completed", v
        assert not [f for f in os.listdir(os.path.join(d, "jobs")) if ".tmp-" in f]
    finally:
        assert srv.stop() == 0
    srv.check_clean_log()


def test_sigterm_checkpoints_running_job():
    d = os.path.join(tempfile.mkdtemp(dir=TMP, prefix="sigterm-"), "data")
    srv = Server(d).start()
    slow = create(SLOW, url=srv.url, key="")
    wait_for(slow["id"], ("in_progress",), url=srv.url, key="")
    assert srv.stop(signal.SIGTERM) == 0
    srv.check_clean_log()
    srv.start()
    try:
        v = wait_for(slow["id"], timeout=120, url=srv.url, key="")
        assert v["status"] == "completed", v
    finally:
        assert srv.stop(signal.SIGINT) == 0
    srv.check_clean_log()
