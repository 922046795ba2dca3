#!/bin/sh
# --device on the command line (docs/CUDA.md "Wiring"): `wan generate`, `wan run transformer` and `wan serve`
# on a build or machine without CUDA fail before any work with the reason; --device cpu gives the same bytes as
# no flag; an unknown device is a usage error. With a usable GPU the cuda runs must succeed instead.
# Usage: tests/device_test.sh BUILD_DIR. Prints one line per check and ends with "N passed, N failed".
B=${1:-build}
WAN="$B/wan"
F=tests/fixtures
M=$F/tiny-wan22-t2v
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
GEN="generate --model $M --size 48x32 --frames 5 --steps 2 --threads 1 --quiet --prompt a-red-circle --seed 3"
NOCUDA='cuda backend: (this build has no CUDA support \(rebuild with `make cuda`|no CUDA device)'

# ---- wan generate -------------------------------------------------------------------------------------
out=$("$WAN" $GEN --device cuda -o $T/cuda.safetensors 2>&1)
rc=$?
if [ $rc -eq 0 ]; then
    cuda=1
    ok "generate --device cuda: ran on a GPU"
elif [ $rc -eq 1 ] && printf '%s\n' "$out" | grep -Eq -- "device \"cuda\": $NOCUDA"; then
    cuda=0
    ok "generate --device cuda: exit 1 with the reason ($(printf '%s\n' "$out" | tail -n 1 | cut -c1-80)...)"
else
    cuda=0
    ko "generate --device cuda (exit $rc)" "$out"
fi
if [ $cuda -eq 0 ] && [ -e $T/cuda.safetensors ]; then ko "generate --device cuda: no output written"; fi
"$WAN" $GEN -o $T/none.safetensors >/dev/null 2>&1
"$WAN" $GEN --device cpu -o $T/cpu.safetensors >/dev/null 2>&1
if [ -s $T/none.safetensors ] && cmp -s $T/none.safetensors $T/cpu.safetensors; then
    ok "generate --device cpu: the same bytes as no --device"
else
    ko "generate --device cpu: differs from no --device"
fi
expect "generate --device tpu: unknown device" 2 'unknown backend "tpu" \(expected cpu, cuda or cuda:N\)' \
    "$WAN" $GEN --device tpu -o $T/tpu.safetensors
expect "generate --device cuda:x: bad index" 2 'expected cuda or cuda:N' "$WAN" $GEN --device cuda:x -o $T/x.safetensors
expect "generate --device '': bad value" 2 "bad value '' for --device" "$WAN" $GEN --device "" -o $T/e.safetensors

# ---- wan run transformer ------------------------------------------------------------------------------
RUN="run transformer --model $M --in $F/transformer/t2v_high.safetensors --threads 1"
if [ $cuda -eq 0 ]; then
    expect "run transformer --device cuda: exit 1 with the reason" 1 "$NOCUDA" "$WAN" $RUN --device cuda --out $T/c.st
else
    expect "run transformer --device cuda: ran on a GPU" 0 "high-noise expert" "$WAN" $RUN --device cuda --out $T/c.st
fi
"$WAN" $RUN --out $T/a.st >/dev/null 2>&1
"$WAN" $RUN --device cpu --out $T/b.st >/dev/null 2>&1
if [ -s $T/a.st ] && cmp -s $T/a.st $T/b.st; then ok "run transformer --device cpu: the same bytes as no --device"
else ko "run transformer --device cpu: differs from no --device"; fi

# ---- wan serve: refused at start-up -------------------------------------------------------------------
if [ $cuda -eq 0 ]; then
    expect "serve --device cuda: refused at start-up" 1 "wan serve: --device cuda: $NOCUDA" \
        "$WAN" serve --model $M --device cuda --port 0 --data-dir $T/srv
else
    echo "[ SKIP ] serve --device cuda: a GPU is present, the server would start"
fi
finish
