#!/bin/sh
# The whole test suite: the C test binary, then every tests/*_test.sh script. Prints each part's
# output and ends with the combined "N passed, N failed" (plus ", N skipped" when a part skipped cases).
# Usage: tests/run_all.sh BUILD_DIR
B=${1:-build}
total_pass=0
total_fail=0
total_skip=0
status=0
log=$(mktemp)
run_part() {
    "$@" >"$log" 2>&1
    rc=$?
    cat "$log"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    total_skip=$((total_skip + ${s:-0}))
    if [ -z "$line" ]; then p=0; f=1; echo "(no summary from: $*)"; fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "(exit code $rc from: $*)"; fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    [ "$rc" -ne 0 ] && status=1
}
run_part "$B/wan_tests"
for t in tests/*_test.sh; do
    run_part sh "$t" "$B"
done
rm -f "$log"
if [ "$total_skip" -gt 0 ]; then
    echo "$total_pass passed, $total_fail failed, $total_skip skipped"
else
    echo "$total_pass passed, $total_fail failed"
fi
exit $status
