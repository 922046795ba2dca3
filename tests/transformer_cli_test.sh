#!/bin/sh
# `wan run transformer` checks: exit codes and messages. Usage: tests/transformer_cli_test.sh BUILD_DIR
# (numerical parity of the same code path is checked by build/wan_tests dit_parity_*).
B=${1:-build}
WAN="$B/wan"
F=tests/fixtures
T=$F/transformer
out=$(mktemp -d)
. "$(dirname "$0")/lib.sh"
expect "run transformer: pipeline, high expert" 0 "high-noise expert, sample \[1, 16, 3, 8, 12\]" \
    "$WAN" run transformer --model $F/tiny-wan22-t2v --in $T/t2v_high.safetensors --out "$out/a.safetensors" --threads 2
if [ -s "$out/a.safetensors" ]; then ok "run transformer: output written"; else ko "run transformer: output written"; fi
expect "run transformer: pipeline, low expert" 0 "low-noise expert" \
    "$WAN" run transformer --model $F/tiny-wan22-t2v --expert low --in $T/t2v_low.safetensors --out "$out/b.safetensors"
expect "run transformer: original expert folder" 0 "sample \[1, 16, 3, 8, 12\]" \
    "$WAN" run transformer --model $F/tiny-wan22-t2v-orig/high_noise_model --in $T/t2v_high.safetensors --out "$out/c.safetensors"
expect "run transformer: component folder, per-token t" 0 "sample \[1, 48, 3, 8, 12\]" \
    "$WAN" run transformer --model $F/tiny-wan22-ti2v/transformer --in $T/ti2v_tokens.safetensors --out "$out/d.safetensors"
expect "run transformer: channel mismatch" 1 "in_channels 16" \
    "$WAN" run transformer --model $F/tiny-wan22-t2v --in $T/ti2v_scalar.safetensors --out "$out/e.safetensors"
expect "run transformer: no low expert" 1 "no transformer_2" \
    "$WAN" run transformer --model $F/tiny-wan22-ti2v --expert low --in $T/ti2v_scalar.safetensors --out "$out/f.safetensors"
expect "run transformer: bad --expert" 2 "high or low" \
    "$WAN" run transformer --model $F/tiny-wan22-t2v --expert mid --in $T/t2v_high.safetensors --out "$out/g.safetensors"
expect "run transformer: missing --in" 2 "usage: wan run transformer" \
    "$WAN" run transformer --model $F/tiny-wan22-t2v --out "$out/h.safetensors"
expect "run transformer: input file without the tensors" 1 "no tensor named 'hidden_states'" \
    "$WAN" run transformer --model $F/tiny-wan22-t2v --in "$out/a.safetensors" --out "$out/i.safetensors"

rm -rf "$out"
finish
