#!/bin/sh
# `wan generate --lora` end to end on the tiny t2v fixture with the adapters of tools/ref/dump_lora.py
# (tests/fixtures/lora): the Wan2.2-Lightning recipe (4 Euler steps, shift 5, CFG 1, one LoRA per expert) in
# both modes, the default target (the high-noise expert, as diffusers), the option syntax and bad adapters.
# Frames are compared with diffusers' WanPipeline + load_lora_weights within ±1 per byte.
# Usage: tests/lora_test.sh BUILD_DIR. Prints one line per check and ends with "N passed, N failed".
B=${1:-build}
WAN="$B/wan"
F=tests/fixtures
M=$F/tiny-wan22-t2v
L=$F/lora
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# frames_vs REF GOT: "N MAX" = bytes that differ and the largest difference of the `frames` tensors
frames_vs() {
    st_data "$1" frames >$T/ref.bin || : >$T/ref.bin
    st_data "$2" frames >$T/got.bin || : >$T/got.bin
    [ "$(wc -c <$T/ref.bin)" -eq 41472 ] && [ "$(wc -c <$T/got.bin)" -eq 41472 ] || { echo "size 999"; return; }
    cmp -l $T/got.bin $T/ref.bin 2>/dev/null | awk 'function o(s){return (substr(s,1,1)*64)+(substr(s,2,1)*8)+substr(s,3,1)}
        {s=sprintf("%03d",$2); t=sprintf("%03d",$3); x=o(s)-o(t); if(x<0)x=-x; if(x>m)m=x; n++} END {printf "%d %d", n, m}'
}
check_frames() { # NAME REF GOT
    d=$(frames_vs "$2" "$3")
    if [ "${d#* }" -le 1 ] 2>/dev/null; then ok "$1: frames match diffusers (${d% *} bytes differ, max ${d#* })"
    else ko "$1: frames vs diffusers (differing, max: $d)"; fi
}

BASE="--model $M --size 48x32 --frames 9 --threads 1 --quiet --prompt-embeds $L/embeds.safetensors"
LIGHT="$BASE --steps 4 --cfg 1 --cfg2 1 --sampler euler --shift 5 --latents $L/case_lightning.safetensors"
for mode in runtime merge; do
    expect "lightning ($mode): exit 0" 0 "wrote" "$WAN" generate $LIGHT --lora-mode $mode \
        --lora $L/orig_high.safetensors@high --lora $L/orig_low.safetensors:1@low -o $T/light_$mode.safetensors
    check_frames "lightning ($mode)" $L/case_lightning.safetensors $T/light_$mode.safetensors
done
if [ -f $T/light_runtime.safetensors ] && grep -q '"high_noise_steps": 2,' $T/light_runtime.json &&
    grep -q '"guidance_scale": 1,' $T/light_runtime.json &&
    grep -q '"loras": \[{"path": "tests/fixtures/lora/orig_high.safetensors", "strength": 1, "target": "high"}, ' \
        $T/light_runtime.json; then ok "lightning: 2 high-noise steps, CFG 1 and the LoRAs in the sidecar"
else ko "lightning: sidecar" "$(cat $T/light_runtime.json 2>/dev/null)"; fi

# no target: the high-noise expert only, as diffusers' load_lora_weights (warned about)
CFG="$BASE --steps 4 --cfg 6 --cfg2 2 --latents $L/case_peft_high.safetensors"
expect "default target: warned" 0 "high-noise expert \(transformer\) only" \
    "$WAN" generate $CFG --lora $L/peft_high.safetensors -o $T/peft.safetensors
check_frames "default target = @high" $L/case_peft_high.safetensors $T/peft.safetensors
CFG="$BASE --steps 4 --cfg 6 --cfg2 2 --latents $L/case_orig_same.safetensors"
expect "one file @both at strength 0.5" 0 "wrote" "$WAN" generate $CFG --lora $L/orig_high.safetensors:0.5@both \
    -o $T/same.safetensors
check_frames "one file @both at strength 0.5" $L/case_orig_same.safetensors $T/same.safetensors

# bad input
expect "missing file" 1 "nope.safetensors: cannot open" "$WAN" generate $LIGHT --lora $T/nope.safetensors@high -o $T/x.mp4
head -c 3000 $L/kohya_high.safetensors >$T/trunc.safetensors
expect "truncated file" 1 "trunc.safetensors: header length" "$WAN" generate $LIGHT --lora $T/trunc.safetensors \
    -o $T/x.mp4
WRONG="'transformer.proj_out.lora_B.weight' \[64, 4\] do not fit the model's 'proj_out.weight' \[192, 64\]"
expect "adapter for another model (48 latent channels)" 1 "$WRONG" "$WAN" generate --model $F/tiny-wan22-ti2v --size 64x64 --frames 5 --steps 1 --threads 1 --quiet --prompt "a cat" \
    --lora $L/peft_high.safetensors -o $T/x.mp4
expect "@low on a one-expert model" 2 "needs a model with a low-noise expert" "$WAN" generate --model $F/tiny-wan22-ti2v \
    --size 64x64 --frames 5 --steps 1 --threads 1 --quiet --prompt "a cat" --lora $L/kohya_low.safetensors@low -o $T/x.mp4
expect "bad --lora-mode" 2 "bad value 'fast' for --lora-mode" "$WAN" generate $LIGHT --lora-mode fast -o $T/x.mp4
finish
