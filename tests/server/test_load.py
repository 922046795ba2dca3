"""A bounded load test: 20 jobs submitted at once while 200 clients poll their status concurrently;
every accepted job completes exactly once and none is lost or listed twice."""
import threading
import time

from common import create, jrequest, wait_for

N_JOBS = 20
N_POLLERS = 200
POLLS_EACH = 5


def test_concurrent_jobs_and_polls():
    ids, errors = [], []
    lock = threading.Lock()

    def submit(i):
        try:
            v = create({"prompt": "load job %d" % i})
            with lock:
                ids.append(v["id"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(N_JOBS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(ids) == N_JOBS and len(set(ids)) == N_JOBS

    statuses = []

    def poll(k):
        try:
            for j in range(POLLS_EACH):
                vid = ids[(k + j) % N_JOBS]
                s, v = jrequest("GET", "/v1/videos/" + vid)
                assert s == 200 and v["id"] == vid, (s, v)
                with lock:
                    statuses.append(v["status"])
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    t0 = time.time()
    pollers = [threading.Thread(target=poll, args=(k,)) for k in range(N_POLLERS)]
    for t in pollers:
        t.start()
    for t in pollers:
        t.join(120)
    dt = time.time() - t0
    assert not errors, errors[:3]
    n = N_POLLERS * POLLS_EACH
    assert len(statuses) == n
    print("    %d status polls from %d concurrent clients in %.2fs: %.0f requests/s" % (n, N_POLLERS, dt, n / dt))

    t0 = time.time()
    for vid in ids:
        v = wait_for(vid, timeout=240)
        assert v["status"] == "completed", v
    print("    %d jobs finished %.1fs after the polls" % (N_JOBS, time.time() - t0))
    s, lst = jrequest("GET", "/v1/videos?limit=100")
    listed = [v["id"] for v in lst["data"]]
    assert len(listed) == len(set(listed)), "a job is listed twice"
    for vid in ids:
        assert listed.count(vid) == 1, vid
    # each job ran exactly once
    attempts = []
    for vid in ids:
        s, v = jrequest("GET", "/v1/videos/" + vid)
        attempts.append(v["started_at"] is not None and v["completed_at"] is not None)
    assert all(attempts)
