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

# st_data FILE NAME: the raw bytes of one tensor of a safetensors file (fails when it is absent).
st_data() {
    n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
    offs=$(dd if="$1" bs=1 skip=8 count="$n" 2>/dev/null | grep -o "\"$2\":{[^}]*}" |
        sed -E 's/.*"data_offsets":\[([0-9]+), ?([0-9]+)\].*/\1 \2/')
    [ -n "$offs" ] || return 1
    set -- "$1" $offs
    dd if="$1" iflag=skip_bytes,count_bytes skip=$((8 + n + $2)) count=$(($3 - $2)) 2>/dev/null
}
