#!/bin/sh
# CLI checks of `wan run vae-decode` / `wan run vae-encode` (the numbers are checked by test_vae.c).
# Usage: tests/vae_test.sh BUILD_DIR. Prints one line per check and ends with "N passed, N failed".
B=${1:-build}
WAN="$B/wan"
F=tests/fixtures
. "$(dirname "$0")/lib.sh"

T=$(mktemp -d)
expect "vae-decode: pipeline folder" 0 "sample \[1, 3, 17, 32, 48\]" "$WAN" run vae-decode --model $F/tiny-wan22-t2v --in $F/vae/tiny21.safetensors --out $T/a.safetensors
expect "vae-decode: vae folder, Wan2.2" 0 "sample \[1, 3, 17, 64, 96\]" "$WAN" run vae-decode --model $F/tiny-wan22-ti2v/vae --in $F/vae/tiny22.safetensors --out $T/b.safetensors
expect "vae-decode: original names, tiled" 0 "sample \[1, 3, 17, 32, 48\]" "$WAN" run vae-decode --model $F/tiny-wan22-t2v-orig/Wan2.1_VAE.safetensors --in $F/vae/tiny21.safetensors --out $T/c.safetensors --tiled --tile 32 --tile-stride 24
expect "vae-decode: original layout folder" 0 "sample" "$WAN" run vae-decode --model $F/tiny-wan22-t2v-orig --in $F/vae/tiny21.safetensors --out $T/d.safetensors
expect "vae-decode: wrong z channels" 2 "z has 16 channels, this VAE needs 48" "$WAN" run vae-decode --model $F/tiny-wan22-ti2v --in $F/vae/tiny21.safetensors --out $T/e.safetensors
expect "vae-decode: no VAE" 1 "has no VAE" "$WAN" run vae-decode --model $F/tiny-wan22-t2v/transformer --in $F/vae/tiny21.safetensors --out $T/e.safetensors
expect "vae-decode: no z" 1 "no tensor named 'z'" "$WAN" run vae-decode --model $F/tiny-wan22-t2v --in $F/tiny-wan22-t2v/vae/diffusion_pytorch_model.safetensors --out $T/e.safetensors
expect "vae-decode usage" 2 "usage: wan run vae-decode" "$WAN" run vae-decode --model $F/tiny-wan22-t2v
expect "vae-encode" 0 "latent_dist_mean \[1, 48, 2, 4, 6\]" "$WAN" run vae-encode --model $F/tiny-wan22-ti2v --in $F/vae/tiny22.safetensors --out $T/f.safetensors
expect "vae-encode usage" 2 "usage: wan run vae-encode" "$WAN" run vae-encode --tiled
expect "wan info: original-name VAE" 0 "original Wan names" "$WAN" info $F/tiny-wan22-t2v-orig/Wan2.1_VAE.safetensors
rm -rf "$T"

finish
