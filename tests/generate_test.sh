#!/bin/sh
# `wan generate` end to end on the tiny fixtures: output formats (MP4 checked with ffprobe, safetensors,
# PNG folder), --dump-steps, --latents and --prompt-embeds inputs (the pipeline fixtures of
# tools/ref/dump_pipeline.py), the JSON sidecar, bad input and Ctrl-C.
# Usage: tests/generate_test.sh BUILD_DIR. Prints one line per check and ends with "N passed, N failed".
B=${1:-build}
WAN="$B/wan"
F=tests/fixtures
M=$F/tiny-wan22-t2v
P=$F/pipeline
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# the tiny models run fastest on one thread (the machine is shared)
SMALL="--model $M --size 48x32 --frames 9 --steps 2 --threads 1 --quiet"

# st_header FILE: the JSON header of a safetensors file
st_header() {
    n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
    dd if="$1" bs=1 skip=8 count="$n" 2>/dev/null
}

# st_entry FILE NAME: "DTYPE [d0,d1,...]" of one tensor ("" when absent)
st_entry() {
    e=$(st_header "$1" | grep -o "\"$2\":{[^}]*}")
    [ -n "$e" ] || return 0
    dt=$(printf '%s' "$e" | sed -E 's/.*"dtype":"([A-Z0-9]+)".*/\1/')
    sh=$(printf '%s' "$e" | sed -E 's/.*"shape":(\[[0-9, ]*\]).*/\1/' | tr -d ' ')
    echo "$dt $sh"
}

# st_data FILE NAME: the raw bytes of one tensor
st_data() {
    n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
    offs=$(st_header "$1" | grep -o "\"$2\":{[^}]*}" | sed -E 's/.*"data_offsets":\[([0-9]+), ?([0-9]+)\].*/\1 \2/')
    [ -n "$offs" ] || return 1
    set -- "$1" $offs
    dd if="$1" iflag=skip_bytes,count_bytes skip=$((8 + n + $2)) count=$(($3 - $2)) 2>/dev/null
}

# ---- MP4 ------------------------------------------------------------------------------------------
expect "mp4: exit 0 and summary" 0 "wrote $T/a.mp4: 9 frames 48x32 at 16 fps" \
    "$WAN" generate $SMALL --prompt "a red circle" --negative-prompt "" --seed 7 -o $T/a.mp4
if command -v ffprobe >/dev/null 2>&1; then
    info=$(ffprobe -v error -select_streams v:0 -count_frames \
        -show_entries stream=codec_name,pix_fmt,width,height,nb_read_frames,r_frame_rate -of default=nw=1 $T/a.mp4 2>&1)
    want="codec_name=h264 width=48 height=32 pix_fmt=yuv420p r_frame_rate=16/1 nb_read_frames=9"
    bad=""
    for kv in $want; do printf '%s\n' "$info" | grep -qx -- "$kv" || bad="$bad $kv"; done
    if [ -z "$bad" ]; then ok "mp4: ffprobe h264 yuv420p 48x32, 9 frames at 16 fps"; else ko "mp4: ffprobe (missing:$bad)" "$info"; fi
    expect "mp4: --fps 24 --frames 5" 0 "5 frames 48x32 at 24 fps" \
        "$WAN" generate --model $M --size 48x32 --frames 5 --steps 1 --threads 1 --quiet --prompt "a cat" --fps 24 -o $T/f.mp4
    r=$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=nb_read_frames,r_frame_rate \
        -of csv=p=0 $T/f.mp4 2>&1)
    if [ "$r" = "24/1,5" ]; then ok "mp4: ffprobe 5 frames at 24 fps"; else ko "mp4: ffprobe --fps 24" "$r"; fi
else
    echo "[ SKIP ] mp4 stream checks: ffprobe is not installed (scripts/setup.sh installs ffmpeg)"
fi

expect "ti2v: 24 fps, size rounded to 32" 0 "wrote $T/t.mp4: 5 frames 96x64 at 24 fps" \
    "$WAN" generate --model $F/tiny-wan22-ti2v --size 112x80 --frames 5 --steps 1 --threads 1 --prompt "a cat" -o $T/t.mp4

# ---- JSON sidecar -------------------------------------------------------------------------------
if [ -f $T/a.json ] && grep -q '"seed": 7,' $T/a.json && grep -q '"num_frames": 9,' $T/a.json &&
    grep -q '"high_noise_steps": 1,' $T/a.json && grep -q '"negative_prompt": "",' $T/a.json; then
    ok "sidecar a.json holds the seed and the settings"
else
    ko "sidecar a.json" "$(cat $T/a.json 2>&1)"
fi

# ---- safetensors and PNG frames -----------------------------------------------------------------
expect "safetensors output" 0 "wrote $T/a.safetensors" \
    "$WAN" generate $SMALL --prompt "a red circle" --negative-prompt "" --seed 7 -o $T/a.safetensors
e=$(st_entry $T/a.safetensors frames)
if [ "$e" = "U8 [9,32,48,3]" ]; then ok "safetensors: frames U8 [9,32,48,3]"; else ko "safetensors: frames '$e'" "$(st_header $T/a.safetensors)"; fi
expect "PNG folder output" 0 "wrote $T/pngs" \
    "$WAN" generate $SMALL --prompt "a red circle" --seed 7 -o $T/pngs
n=$(ls $T/pngs/*.png 2>/dev/null | wc -l)
if [ "$n" -eq 9 ] && [ "$(od -An -c -N4 "$(ls $T/pngs/*.png | head -n 1)" | tr -d ' ')" = "211PNG" ]; then
    ok "PNG folder: 9 PNG files"
else
    ko "PNG folder: $n files" "$(ls -la $T/pngs 2>&1)"
fi

# ---- --dump-steps -------------------------------------------------------------------------------
expect "--dump-steps" 0 "wrote" "$WAN" generate $SMALL --steps 3 --prompt "a red circle" --dump-steps $T/steps.safetensors -o $T/d.safetensors
S=$T/steps.safetensors
miss=""
for t in initial_latents latents_step_0 latents_step_1 latents_step_2; do
    [ "$(st_entry $S $t)" = "F32 [1,16,3,4,6]" ] || miss="$miss $t"
done
[ "$(st_entry $S timesteps)" = "F32 [3]" ] || miss="$miss timesteps"
[ "$(st_entry $S sigmas)" = "F32 [4]" ] || miss="$miss sigmas"
[ -z "$(st_entry $S latents_step_3)" ] || miss="$miss (latents_step_3 present)"
if [ -z "$miss" ]; then
    ok "--dump-steps: initial_latents, timesteps, sigmas [4], latents_step_0..2 [1,16,3,4,6]"
else
    ko "--dump-steps (wrong:$miss)" "$(st_header $S)"
fi

# ---- --latents and --prompt-embeds (the t2v_unipc pipeline case: CFG 6 / 2, 4 steps) -------------
CASE="--model $M --size 48x32 --frames 9 --steps 4 --cfg 6 --cfg2 2 --threads 1 --quiet --latents $P/t2v_unipc.safetensors --prompt-embeds $P/embeds.safetensors"
expect "--latents --prompt-embeds" 0 "wrote" "$WAN" generate $CASE --seed 1 -o $T/c1.safetensors
expect "--latents --prompt-embeds, another seed" 0 "wrote" "$WAN" generate $CASE --seed 2 -o $T/c2.safetensors
if cmp -s $T/c1.safetensors $T/c2.safetensors; then ok "--latents: the seed is unused"; else ko "--latents: the seed changed the output"; fi
# frames against diffusers' (tests/fixtures/pipeline/t2v_unipc.safetensors), within ±1 per byte
st_data $T/c1.safetensors frames >$T/got.bin || : >$T/got.bin
st_data $P/t2v_unipc.safetensors frames >$T/ref.bin || : >$T/ref.bin
sz=$(wc -c <$T/got.bin)
d=$(cmp -l $T/got.bin $T/ref.bin 2>/dev/null | awk 'function o(s){return (substr(s,1,1)*64)+(substr(s,2,1)*8)+substr(s,3,1)}
    {s=sprintf("%03d",$2); t=sprintf("%03d",$3); x=o(s)-o(t); if(x<0)x=-x; if(x>m)m=x; n++} END {printf "%d %d", n, m}')
if [ "$sz" -eq 41472 ] && [ "$(wc -c <$T/ref.bin)" -eq 41472 ] && [ "${d#* }" -le 1 ]; then
    ok "--latents --prompt-embeds: frames match diffusers (${d% *} of $sz bytes differ, max ${d#* })"
else
    ko "--latents --prompt-embeds: frames vs diffusers ($sz bytes; differing, max: $d)"
fi
expect "--latents of the wrong shape" 1 "latents must be F32 \[1, 16, 3, 4, 6\], got F32 \[1, 48, 3, 4, 6\]" \
    "$WAN" generate $CASE --latents $P/ti2v_unipc.safetensors -o $T/x.mp4
# embeddings made by `wan encode-prompt` give the same video as the prompt itself
expect "wan encode-prompt (prompt and negative)" 0 "^$" "$WAN" encode-prompt --model $M --prompt "a red circle" \
    --negative-prompt "" --threads 1 --out $T/pe2.safetensors
expect "wan encode-prompt (prompt only)" 0 "^$" "$WAN" encode-prompt --model $M --prompt "a red circle" --threads 1 \
    --out $T/pe1.safetensors
expect "--prompt-embeds from encode-prompt" 0 "wrote" "$WAN" generate $SMALL --prompt-embeds $T/pe2.safetensors \
    -o $T/e1.safetensors
expect "--prompt with the same text" 0 "wrote" "$WAN" generate $SMALL --prompt "a red circle" --negative-prompt "" \
    -o $T/e2.safetensors
if cmp -s $T/e1.safetensors $T/e2.safetensors; then ok "--prompt-embeds: same frames as --prompt"; else ko "--prompt-embeds: frames differ from --prompt"; fi
expect "--prompt-embeds without negative, CFG on" 2 "needs negative_prompt_embeds" \
    "$WAN" generate $SMALL --prompt-embeds $T/pe1.safetensors --cfg 5 -o $T/x.mp4
expect "--prompt-embeds without negative, CFG off" 0 "wrote" \
    "$WAN" generate $SMALL --prompt-embeds $T/pe1.safetensors --cfg 1 -o $T/x.safetensors
expect "--prompt-embeds file without prompt_embeds" 1 "prompt_embeds" \
    "$WAN" generate $SMALL --prompt-embeds $P/t2v_unipc.safetensors -o $T/x.mp4

# ---- bad input ----------------------------------------------------------------------------------
expect "size not a multiple of 16: rounded with a warning" 0 "size 40x36 is not a multiple of 16: using 32x32" \
    "$WAN" generate --model $M --size 40x36 --frames 5 --steps 1 --threads 1 --prompt "a cat" -o $T/r.mp4
expect "frames not 4k+1: rounded with a warning" 0 "num_frames 6 is not 4k\+1: using 5" \
    "$WAN" generate --model $M --size 32x32 --frames 6 --steps 1 --threads 1 --prompt "a cat" -o $T/r.mp4
expect "--frames 0" 2 "--frames 0: at least 1 frame" "$WAN" generate $SMALL --prompt "a cat" --frames 0 -o $T/x.mp4
expect "--steps 0" 2 "--steps 0: at least 1 step" "$WAN" generate $SMALL --prompt "a cat" --steps 0 -o $T/x.mp4
expect "--size 48" 2 "bad value '48' for --size" "$WAN" generate $SMALL --prompt "a cat" --size 48 -o $T/x.mp4
expect "unwritable output path" 1 "cannot write '$T/no/such/dir/x.mp4'" \
    "$WAN" generate $SMALL --prompt "a cat" -o $T/no/such/dir/x.mp4
expect "unknown output extension" 1 "unknown video extension" "$WAN" generate $SMALL --prompt "a cat" -o $T/x.avi
mkdir $T/novae
for c in model_index.json scheduler text_encoder tokenizer transformer transformer_2; do ln -s "$(pwd)/$M/$c" $T/novae/$c; done
expect "model folder without vae/" 1 "component folder 'vae' named by model_index.json is missing" \
    "$WAN" generate --model $T/novae --prompt "a cat" -o $T/x.mp4
expect "model folder that does not exist" 1 "$T/nothing" "$WAN" generate --model $T/nothing --prompt "a cat" -o $T/x.mp4
printf 'a red \342\202 circle' >$T/bad.txt
expect "prompt file that is not UTF-8" 2 "bad.txt: not valid UTF-8 \(byte 6\)" \
    "$WAN" generate $SMALL --prompt-file $T/bad.txt -o $T/x.mp4
printf 'a red circle\n' >$T/good.txt
expect "prompt file" 0 "wrote" "$WAN" generate $SMALL --prompt-file $T/good.txt -o $T/p.safetensors
if grep -q '"prompt": "a red circle",' $T/p.json; then ok "prompt file: the sidecar holds the prompt"; else ko "prompt file sidecar" "$(cat $T/p.json)"; fi
expect "no prompt" 2 "give --prompt, --prompt-file or --prompt-embeds" "$WAN" generate --model $M -o $T/x.mp4

# ---- Ctrl-C -------------------------------------------------------------------------------------
# A long run (1000 steps) in the background; SIGINT once it is denoising. It must stop at the next step,
# exit 130 and write neither the video nor the sidecar.
"$WAN" generate --model $M --size 64x64 --frames 9 --steps 1000 --threads 1 --prompt "a cat" -o $T/int.mp4 \
    >$T/int.log 2>&1 &
pid=$!
i=0
while [ $i -lt 300 ] && ! grep -q "denoise" $T/int.log 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
kill -INT $pid
t0=$(date +%s)
wait $pid
rc=$?
dt=$(($(date +%s) - t0))
if [ "$rc" -eq 130 ] && [ "$dt" -le 5 ] && [ ! -e $T/int.mp4 ] && [ ! -e $T/int.json ] && grep -q "cancelled" $T/int.log; then
    ok "Ctrl-C: exit 130 after ${dt} s, no output file"
else
    ko "Ctrl-C: exit $rc after ${dt} s" "$(ls $T; tail -n 3 $T/int.log)"
fi

finish
