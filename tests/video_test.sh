#!/bin/sh
# Video writer checks through the CLI (`wan run video`), verified with ffprobe when it is installed.
# Usage: tests/video_test.sh BUILD_DIR. Prints one line per check and ends with "N passed, N failed".
B=${1:-build}
WAN="$B/wan"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib.sh"

# A safetensors file with frames U8 [9,32,48,3]: header length (8 bytes LE), JSON header, 41472 bytes.
hdr='{"frames":{"dtype":"U8","shape":[9,32,48,3],"data_offsets":[0,41472]}}'
while [ $(( ${#hdr} % 8 )) -ne 0 ]; do hdr="$hdr "; done
n=${#hdr}
printf "$(printf '\\%03o\\%03o\\000\\000\\000\\000\\000\\000' $((n % 256)) $((n / 256)))" > "$T/in.safetensors"
printf '%s' "$hdr" >> "$T/in.safetensors"
LC_ALL=C awk 'BEGIN { for (f = 0; f < 9; f++) for (y = 0; y < 32; y++) for (x = 0; x < 48; x++)
             printf "%c%c%c", 16 + x * 4, 16 + y * 6, 40 + f * 20 }' </dev/null |
    LC_ALL=C head -c 41472 >> "$T/in.safetensors"

expect "run video: mp4" 0 "wrote .*clip.mp4: 9 frames, 48x32, 16 fps" \
    "$WAN" run video --in "$T/in.safetensors" --out "$T/clip.mp4" --fps 16 --json '{"seed": 1}'
expect "run video: webm" 0 "wrote" "$WAN" run video --in "$T/in.safetensors" --out "$T/clip.webm" --fps 24
expect "run video: png folder" 0 "wrote" "$WAN" run video --in "$T/in.safetensors" --out "$T/pngs"
expect "run video: unwritable path" 1 "cannot create '/nonexistent-wan-dir/x.mp4'" \
    "$WAN" run video --in "$T/in.safetensors" --out /nonexistent-wan-dir/x.mp4
expect "run video: unknown extension" 1 "unknown video extension" \
    "$WAN" run video --in "$T/in.safetensors" --out "$T/clip.avi"
expect "run video: missing input tensor" 1 "needs a tensor 'frames'" \
    "$WAN" run video --in tests/fixtures/rng/randn.safetensors --out "$T/x.mp4"
if [ -f "$T/clip.json" ] && grep -q '"seed": 1' "$T/clip.json"; then ok "run video: json sidecar"; else ko "run video: json sidecar"; fi
if [ "$(ls "$T/pngs" | grep -c '^frame_0000[0-8]\.png$')" -eq 9 ]; then ok "run video: 9 png files"; else ko "run video: 9 png files" "$(ls "$T/pngs")"; fi

if command -v ffprobe >/dev/null 2>&1; then
    probe() { ffprobe -v error -count_frames -select_streams v:0 \
        -show_entries stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames -of default=nw=1 "$1" 2>&1; }
    p=$(probe "$T/clip.mp4")
    want="codec_name=h264 width=48 height=32 pix_fmt=yuv420p r_frame_rate=16/1 nb_read_frames=9"
    miss=""
    for w in $want; do printf '%s\n' "$p" | grep -qx "$w" || miss="$miss $w"; done
    if [ -z "$miss" ]; then ok "ffprobe mp4: $want"; else ko "ffprobe mp4: missing$miss" "$p"; fi
    p=$(probe "$T/clip.webm")
    want="codec_name=vp9 width=48 height=32 pix_fmt=yuv420p r_frame_rate=24/1 nb_read_frames=9"
    miss=""
    for w in $want; do printf '%s\n' "$p" | grep -qx "$w" || miss="$miss $w"; done
    if [ -z "$miss" ]; then ok "ffprobe webm: $want"; else ko "ffprobe webm: missing$miss" "$p"; fi
    # +faststart: the first top-level box after ftyp is moov
    if ffprobe -v trace "$T/clip.mp4" 2>&1 | grep -o "type:'[a-z]*'" | head -3 | tr '\n' ' ' | grep -q "ftyp.*moov"; then
        ok "ffprobe mp4: moov before mdat (+faststart)"
    else
        ko "ffprobe mp4: moov before mdat (+faststart)"
    fi
else
    echo "[ SKIP ] ffprobe not installed: container checks left to tests/test_video.c"
fi
finish
