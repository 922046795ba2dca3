# lib.sh — shared helpers of the shell tests (sourced). Counts checks and prints the summary line that
# tests/run_all.sh reads.
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "[  OK  ] $1"; }
ko() { fail=$((fail + 1)); echo "[ FAIL ] $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/    /'; }

# expect NAME EXIT_CODE PATTERN CMD... : runs CMD, checks its exit code and that its combined output
# matches the grep -E PATTERN.
expect() {
    _name=$1 _code=$2 _pat=$3
    shift 3
    _out=$("$@" 2>&1)
    _rc=$?
    if [ "$_rc" -eq "$_code" ] && printf '%s\n' "$_out" | grep -Eq -- "$_pat"; then
        ok "$_name"
    else
        ko "$_name (exit $_rc)" "$_out"
    fi
}

# Prints "N passed, N failed" and returns non-zero when a check failed.
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
