#!/bin/sh
# `wan eval` on the trained shapes model (models/wan-tiny-shapes, tools/shapes/): a small subset of the held-out
# prompts (the first 3 of each language) must keep its prompt-adherence accuracy above floors measured when the
# model was made, its frames must equal those of diffusers' WanPipeline (tests/fixtures/shapes, written by
# tools/shapes/eval_ref.py --limit 3 --save) within ±1 per byte, and the C probe must read WanPipeline's frames
# (--probe-only) exactly as the engine's. Also: the strip PNG and bad arguments.
# Usage: tests/shapes_test.sh BUILD_DIR. Prints one line per check and ends with "N passed, N failed".
B=${1:-build}
WAN="$B/wan"
M=models/wan-tiny-shapes
R=tests/fixtures/shapes
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# Measured on this subset (6 videos): colour, background and motion 1.0 in both languages, shape 0.67 (the
# small VAE rounds the shapes, see tools/shapes/README.md), so the first three get floors (on 3 prompts a
# language, anything below 1 is at most 0.67, under issue 10's motion target of 0.8). A regression in any stage
# (tokenizer, umT5, either expert, the MoE switch, CFG, UniPC, the VAE) changes the frames (checked below) and,
# beyond rounding, the probe's reading.
FLOORS="--min colour=1 --min background=1 --min motion=1"
TABLE="all \(6\) +1\.000 +1\.000 +1\.000 +0\.667 +0\.667"

# frames_vs REF GOT: "N MAX" = bytes that differ and the largest difference of the `frames` tensors
frames_vs() {
    st_data "$1" frames >$T/ref.bin || : >$T/ref.bin
    st_data "$2" frames >$T/got.bin || : >$T/got.bin
    [ "$(wc -c <$T/ref.bin)" -eq 110592 ] && [ "$(wc -c <$T/got.bin)" -eq 110592 ] || { echo "size 999"; return; }
    cmp -l $T/got.bin $T/ref.bin 2>/dev/null | awk 'function o(s){return (substr(s,1,1)*64)+(substr(s,2,1)*8)+substr(s,3,1)}
        {s=sprintf("%03d",$2); t=sprintf("%03d",$3); x=o(s)-o(t); if(x<0)x=-x; if(x>m)m=x; n++} END {printf "%d %d", n+0, m+0}'
}

"$WAN" eval --model $M --limit 3 --threads 1 --save $T/c --strip $T/strip.png $FLOORS >$T/gen.txt 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -Eq "$TABLE" $T/gen.txt; then ok "eval: subset accuracy above the floors, table as measured"
else ko "eval: subset accuracy above the floors, table as measured (exit $rc)" "$(cat $T/gen.txt)"; fi
"$WAN" eval --model $M --limit 3 --probe-only $R >$T/probe.txt 2>&1
if grep -q -- '->' $T/gen.txt && [ "$(grep -- '->' $T/gen.txt)" = "$(grep -- '->' $T/probe.txt)" ]; then
    ok "eval: the probe reads WanPipeline's frames as the engine's"
else ko "eval: the probe reads WanPipeline's frames as the engine's" "$(diff $T/gen.txt $T/probe.txt)"; fi

for i in 000 001 002 033 034 035; do
    r=$(frames_vs $R/$i.safetensors $T/c/$i.safetensors)
    if [ "${r#* }" -le 1 ]; then ok "eval: frames of prompt $i = WanPipeline's within ±1 ($r)"
    else ko "eval: frames of prompt $i differ from WanPipeline's (bytes, max: $r)"; fi
done

if [ "$(od -An -tx1 -N8 $T/strip.png | tr -d ' ')" = "89504e470d0a1a0a" ]; then ok "eval: --strip writes a PNG"
else ko "eval: --strip writes a PNG"; fi

printf 'colour\tred\t1\t2\nprompt\ten\t0\tcircle\tred\tblack\tup\ta red circle\n' >$T/bad.tsv
expect "eval: a bad prompt list names file and line" 2 "bad.tsv:1: unknown line kind 'colour'" \
    "$WAN" eval --model $M --prompts $T/bad.tsv
expect "eval: --min below the floor fails" 1 "FAIL: shape accuracy 0.667 < 0.900 \(en\)" \
    "$WAN" eval --model $M --limit 3 --probe-only $R --min shape=0.9
expect "eval: --min with an unknown attribute" 2 "bad value 'size=1' for --min" "$WAN" eval --model $M --min size=1

finish
