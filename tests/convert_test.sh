#!/bin/sh
# `wan convert` and the original release with .pth files, end to end through the CLI: the same frames from
# the .pth release, its diffusers conversion and the diffusers fixture; usage and failure exits.
# Usage: tests/convert_test.sh BUILD_DIR. Prints one line per check and ends with "N passed, N failed".
B=${1:-build}
WAN="$B/wan"
F=tests/fixtures
. "$(dirname "$0")/lib.sh"

same() { # NAME FILE_A FILE_B: byte-identical files
    if [ -f "$2" ] && [ -f "$3" ] && cmp -s "$2" "$3"; then ok "$1"; else ko "$1" "$(ls -l "$2" "$3" 2>&1)"; fi
}

T=$(mktemp -d)
ABS=$(cd "$F" && pwd)
# a complete original release: the experts as safetensors, umT5 and VAE as the .pth files torch.save wrote
R=$T/Wan2.2-T2V-tiny
mkdir -p "$R"
ln -s "$ABS/tiny-wan22-t2v-orig/high_noise_model" "$R/high_noise_model"
ln -s "$ABS/tiny-wan22-t2v-orig/low_noise_model" "$R/low_noise_model"
ln -s "$ABS/tiny-wan22-t2v-pth/Wan2.1_VAE.pth" "$R/Wan2.1_VAE.pth"
ln -s "$ABS/tiny-wan22-t2v-pth/models_t5_umt5-xxl-enc-bf16.pth" "$R/models_t5_umt5-xxl-enc-bf16.pth"
ln -s "$ABS/tiny-wan22-t2v-pth/google" "$R/google"

expect "wan info: .pth release" 0 "layout: original Wan release" "$WAN" info "$R"
expect "wan info: .pth umT5 (bf16, original names)" 0 "BF16 .*original Wan names" "$WAN" info "$R"
expect "wan info: single .pth file" 0 "vae +AutoencoderKLWan" "$WAN" info "$F/tiny-wan22-t2v-pth/Wan2.1_VAE.pth"
expect "wan info: malicious .pth" 1 "global 'posix.system' is not allowed" "$WAN" info "$F/pth/bad_global.pth"

expect "wan convert .pth release -> diffusers" 0 "wrote .*diffusers layout" "$WAN" convert "$R" "$T/diff" --shard-size 300KB
expect "converted folder: pipeline with sharded experts" 0 "639.00 KiB in 3 files" "$WAN" info "$T/diff"
[ -f "$T/diff/transformer/diffusion_pytorch_model.safetensors.index.json" ] && [ -f "$T/diff/tokenizer/tokenizer.json" ] &&
    [ -f "$T/diff/scheduler/scheduler_config.json" ] && ok "converted folder: index, tokenizer, scheduler" ||
    ko "converted folder: index, tokenizer, scheduler" "$(find "$T/diff" | sort)"
expect "wan convert --dtype bf16 --quiet" 0 "^$" "$WAN" convert "$R" "$T/bf16" --dtype bf16 --quiet
out=$("$WAN" info "$T/bf16" 2>&1)
if printf '%s\n' "$out" | grep -q "BF16" && ! printf '%s\n' "$out" | grep -q "F32 "; then ok "bf16 folder is all BF16"
else ko "bf16 folder is all BF16" "$out"; fi
expect "wan convert --layout original" 0 "original layout" "$WAN" convert "$T/diff" "$T/orig" --layout original
expect "original output loads" 0 "layout: original Wan release" "$WAN" info "$T/orig"

# the same frames (byte for byte) from the .pth release, its diffusers conversion and the round trip, with a
# text prompt through the bf16 umT5; and from the .pth release and the diffusers fixture with given embeddings
G="--size 48x32 --frames 5 --steps 3 --seed 7 --cfg 5 --cfg2 3 --quiet"
"$WAN" generate --model "$R" --prompt "a red circle" --negative-prompt "" $G -o "$T/r.safetensors" >/dev/null 2>&1
"$WAN" generate --model "$T/diff" --prompt "a red circle" --negative-prompt "" $G -o "$T/d.safetensors" >/dev/null 2>&1
"$WAN" generate --model "$T/orig" --prompt "a red circle" --negative-prompt "" $G -o "$T/o.safetensors" >/dev/null 2>&1
same "generate: .pth release == its diffusers conversion" "$T/r.safetensors" "$T/d.safetensors"
same "generate: .pth release == diffusers -> original round trip" "$T/r.safetensors" "$T/o.safetensors"
E="--prompt-embeds $F/pipeline/embeds.safetensors"
"$WAN" generate --model "$R" $E $G -o "$T/re.safetensors" >/dev/null 2>&1
"$WAN" generate --model "$F/tiny-wan22-t2v" $E $G -o "$T/fe.safetensors" >/dev/null 2>&1
same "generate: .pth release == diffusers fixture (same embeddings)" "$T/re.safetensors" "$T/fe.safetensors"

# q8_0: the quantised folder is smaller, loads, generates a video near the float one, and converts back to floats
expect "wan convert --quantize q8_0" 0 "wrote .*diffusers layout" "$WAN" convert "$T/diff" "$T/q8" --quantize q8_0
expect "q8_0 folder: I8 weights with F16 scales" 0 "F16 [0-9.]* KiB, I8 " "$WAN" info "$T/q8"
"$WAN" generate --model "$T/q8" --prompt "a red circle" --negative-prompt "" $G -o "$T/q.safetensors" >/dev/null 2>&1
if [ -s "$T/q.safetensors" ]; then ok "generate from the q8_0 folder"; else ko "generate from the q8_0 folder"; fi
expect "wan convert q8_0 -> --dtype f32" 0 "wrote .*diffusers layout" "$WAN" convert "$T/q8" "$T/q8f" --dtype f32
out=$("$WAN" info "$T/q8f" 2>&1)
if ! printf '%s\n' "$out" | grep -q "I8 "; then ok "q8_0 -> f32: no I8 left"; else ko "q8_0 -> f32: no I8 left" "$out"; fi
"$WAN" generate --model "$T/q8f" --prompt "a red circle" --negative-prompt "" $G -o "$T/qf.safetensors" >/dev/null 2>&1
same "generate: q8_0 folder == its f32 copy" "$T/q.safetensors" "$T/qf.safetensors"
expect "wan convert --quantize q4_0" 0 "^$" "$WAN" convert "$T/diff" "$T/q4" --quantize q4_0 --quiet
expect "q4_0 folder: U8 values with F16 scales" 0 "F16 [0-9.]* KiB, U8 " "$WAN" info "$T/q4"
"$WAN" generate --model "$T/q4" --prompt "a red circle" --negative-prompt "" $G -o "$T/q4.safetensors" >/dev/null 2>&1
if [ -s "$T/q4.safetensors" ]; then ok "generate from the q4_0 folder"; else ko "generate from the q4_0 folder"; fi
expect "convert bad quantisation" 2 "use q8_0, q4_0" "$WAN" convert "$R" "$T/x" --quantize q3_k

# ComfyUI float8 experts in an original-layout folder: they generate as they are, and as q8_0
mkdir -p "$T/f8" && cp -r "$F/tiny-wan22-t2v-orig/." "$T/f8/" && rm -rf "$T/f8/high_noise_model" "$T/f8/low_noise_model"
cp -r "$F/fp8/comfy_scaled_e4m3" "$T/f8/high_noise_model" && cp -r "$F/fp8/comfy_quant_e5m2" "$T/f8/low_noise_model"
expect "float8 experts: wan info" 0 "F8_E4M3 .*original Wan names" "$WAN" info "$T/f8"
E8="--prompt-embeds $F/pipeline/embeds.safetensors"
"$WAN" generate --model "$T/f8" $E8 $G -o "$T/f8.safetensors" >/dev/null 2>&1
if [ -s "$T/f8.safetensors" ]; then ok "generate from float8 experts"; else ko "generate from float8 experts"; fi
expect "float8 experts -> q8_0" 0 "^$" "$WAN" convert "$T/f8" "$T/f8q" --quantize q8_0 --quiet
"$WAN" generate --model "$T/f8q" $E8 $G -o "$T/f8q.safetensors" >/dev/null 2>&1
if [ -s "$T/f8q.safetensors" ]; then ok "generate from their q8_0 conversion"; else ko "generate from their q8_0 conversion"; fi

# a lone component (here a ComfyUI-style float8 umT5 file) becomes one component folder that loads
expect "lone float8 umT5 -> f32 component folder" 0 "^$" "$WAN" convert "$F/fp8/umt5_scaled_e4m3.safetensors" "$T/te" --dtype f32 --quiet
expect "the component folder loads" 0 "UMT5EncoderModel .*$T/te" "$WAN" info "$T/te"

# usage and failures
expect "convert usage" 2 "usage: wan convert" "$WAN" convert "$R"
expect "convert bad dtype" 2 "use f32, bf16 or f16" "$WAN" convert "$R" "$T/x" --dtype int8
expect "convert bad shard size" 2 "--shard-size 'lots'" "$WAN" convert "$R" "$T/x" --shard-size lots
expect "convert: destination exists" 1 "already exists" "$WAN" convert "$R" "$T/diff" --quiet
expect "convert: unwritable destination" 1 "cannot create the temporary folder" "$WAN" convert "$R" /proc/wan-x --quiet
expect "convert: corrupt source" 1 "no zip end-of-central-directory" "$WAN" convert "$F/pth/bad_truncated.pth" "$T/y" --quiet
if [ ! -e "$T/x" ] && [ ! -e "$T/y" ] && ! ls -d "$T"/*.tmp-* >/dev/null 2>&1; then ok "failed conversions left nothing"
else ko "failed conversions left nothing" "$(ls -la "$T")"; fi

rm -rf "$T"
finish
