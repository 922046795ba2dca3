"""A tiny test runner for the server tests: runs every test_* function of tests/server/test_*.py in file
order, each bounded by an alarm, prints one line per test and ends with "N passed, N failed"."""
import glob
import importlib.util
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TEST_TIMEOUT = int(os.environ.get("WAN_TEST_TIMEOUT", "150"))


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout("test took longer than %ds" % TEST_TIMEOUT)


def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else ""
    here = os.path.dirname(os.path.abspath(__file__))
    passed = failed = skipped = 0
    signal.signal(signal.SIGALRM, on_alarm)
    for path in sorted(glob.glob(os.path.join(here, "test_*.py"))):
        name = os.path.basename(path)[:-3]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception:
            failed += 1
            print("[ FAIL ] %s (import)\n%s" % (name, traceback.format_exc()), flush=True)
            continue
        tests = [(n, f) for n, f in vars(mod).items() if n.startswith("test_") and callable(f)]
        tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
        for n, f in tests:
            full = "%s.%s" % (name, n)
            if pattern and pattern not in full:
                continue
            t0 = time.time()
            signal.alarm(TEST_TIMEOUT)
            try:
                f()
                signal.alarm(0)
                passed += 1
                print("[  OK  ] %s (%.2fs)" % (full, time.time() - t0), flush=True)
            except common.Skip as e:
                signal.alarm(0)
                skipped += 1
                print("[ SKIP ] %s: %s" % (full, e), flush=True)
            except BaseException:
                signal.alarm(0)
                failed += 1
                print("[ FAIL ] %s (%.2fs)\n%s" % (full, time.time() - t0, traceback.format_exc()), flush=True)
    print("%d passed, %d failed" % (passed, failed) + (", %d skipped" % skipped if skipped else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
