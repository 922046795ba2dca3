#!/bin/sh
# `wan serve` end to end: starts BUILD/wan serve on a free loopback port with a temporary data folder and
# an API key, runs tests/server/test_*.py (the official openai SDK as client, headless Chromium for the
# page, load, restart, auth and limit tests) with the Python packages of tests/server/requirements.txt
# in BUILD/pyenv, stops the server with SIGTERM (which must exit 0 with no sanitizer report), cleans
# up, and ends with "N passed, N failed". Usage: tests/server_test.sh BUILD_DIR [TEST_NAME_FILTER]
B=${1:-build}
FILTER=${2:-}
WAN="$B/wan"
VENV="$B/pyenv"
REQ=tests/server/requirements.txt

summary() { echo "$1 passed, $2 failed"; exit $(( $2 > 0 )); }

if [ ! -x "$WAN" ]; then echo "server_test: $WAN is missing"; summary 0 1; fi
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$VENV/requirements.txt"; then
    echo "server_test: installing $REQ into $VENV"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null ||
        ! "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"; then
        echo "server_test: cannot set up the Python environment (python3-venv and PyPI are needed)"
        rm -rf "$VENV"
        summary 0 1
    fi
    cp "$REQ" "$VENV/requirements.txt"
fi

TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT

# command-line errors: exit 2 with a message for bad usage, 1 for a model that cannot be loaded
cli_pass=0
cli_fail=0
expect() {
    name=$1 code=$2 pat=$3
    shift 3
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq "$code" ] && printf '%s\n' "$out" | grep -Eq -- "$pat"; then
        cli_pass=$((cli_pass + 1)); echo "[  OK  ] $name"
    else
        cli_fail=$((cli_fail + 1)); echo "[ FAIL ] $name (exit $rc)"; printf '%s\n' "$out" | sed 's/^/    /'
    fi
}
expect "wan serve --help" 0 "usage: wan serve --model DIR" "$WAN" serve --help
expect "wan serve without --model" 2 "--model DIR is required" "$WAN" serve
expect "wan serve bad port" 2 "--port needs an integer" "$WAN" serve --model x --port http
expect "wan serve unknown option" 2 "unknown option '--frobnicate'" "$WAN" serve --model x --frobnicate
expect "wan serve missing key file" 2 "cannot open the API key file" "$WAN" serve --model x --api-key-file "$TMPD/none"
expect "wan serve missing LoRA folder" 2 "--lora-dir .*: No such file" "$WAN" serve --model x --lora-dir "$TMPD/none"
expect "wan serve missing model" 1 "no such file or folder" "$WAN" serve --model "$TMPD/none" --port 0
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMPD/key"
"$WAN" serve --model tests/fixtures/tiny-wan22-t2v --host 127.0.0.1 --port 0 --data-dir "$TMPD/data" \
    --api-key-file "$TMPD/key" --threads 1 --max-frames 33 --max-pixels 16384 --max-prompt 2000 --max-queue 64 \
    >"$TMPD/stdout" 2>"$TMPD/server.log" &
PID=$!
URL=""
i=0
while [ $i -lt 300 ]; do
    URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$TMPD/stdout" 2>/dev/null | head -n 1)
    [ -n "$URL" ] && break
    kill -0 $PID 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
if [ -z "$URL" ]; then
    echo "server_test: the server did not start"
    cat "$TMPD/server.log"
    kill -KILL $PID 2>/dev/null
    summary 0 1
fi
echo "server_test: $URL (pid $PID)"

WAN_SERVER_URL=$URL WAN_SERVER_KEY=$(cat "$TMPD/key") WAN_BIN=$WAN WAN_MODEL=tests/fixtures/tiny-wan22-t2v \
    WAN_TMP=$TMPD timeout 600 "$VENV/bin/python" tests/server/run.py "$FILTER" >"$TMPD/results" 2>&1
cat "$TMPD/results"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$TMPD/results" | tail -n 1)
pass=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
fail=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
if [ -z "$line" ]; then pass=0; fail=1; echo "[ FAIL ] the test runner gave no summary"; fi

kill -TERM $PID 2>/dev/null
wait $PID
rc=$?
pass=$((pass + cli_pass))
fail=$((fail + cli_fail))
if [ "$rc" -eq 0 ] && ! grep -Eq 'LeakSanitizer|AddressSanitizer|runtime error:' "$TMPD/server.log"; then
    pass=$((pass + 1))
    echo "[  OK  ] server exits cleanly on SIGTERM"
else
    fail=$((fail + 1))
    echo "[ FAIL ] server exit code $rc on SIGTERM; its log:"
    tail -n 60 "$TMPD/server.log"
fi
summary "$pass" "$fail"
