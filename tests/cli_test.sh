#!/bin/sh
# CLI checks: exit codes and the text users see. Usage: tests/cli_test.sh BUILD_DIR
# Prints one line per check and ends with "N passed, N failed".
B=${1:-build}
WAN="$B/wan"
F=tests/fixtures
. "$(dirname "$0")/lib.sh"

expect "wan --help" 0 "wan info PATH" "$WAN" --help
expect "wan with no command" 2 "usage" "$WAN"
expect "wan unknown command" 2 "unknown command 'frobnicate'" "$WAN" frobnicate
expect "wan info t2v: layout" 0 "layout: diffusers pipeline" "$WAN" info $F/tiny-wan22-t2v
expect "wan info t2v: both experts" 0 "transformer_2 WanTransformer3DModel" "$WAN" info $F/tiny-wan22-t2v
expect "wan info t2v: boundary" 0 "boundary_ratio 0.875" "$WAN" info $F/tiny-wan22-t2v
expect "wan info t2v: vae" 0 "vae +AutoencoderKLWan" "$WAN" info $F/tiny-wan22-t2v
expect "wan info t2v: text encoder" 0 "text_encoder +UMT5EncoderModel" "$WAN" info $F/tiny-wan22-t2v
expect "wan info t2v: memory" 0 "memory: about" "$WAN" info $F/tiny-wan22-t2v
expect "wan info ti2v" 0 "expand_timesteps: yes" "$WAN" info $F/tiny-wan22-ti2v
expect "wan info component folder" 0 "layout: diffusers component" "$WAN" info $F/tiny-wan22-t2v/transformer_2
expect "wan info missing path" 1 "no such file or folder" "$WAN" info /nonexistent
expect "wan info usage" 2 "usage: wan info PATH" "$WAN" info
expect "wan info not a safetensors file" 1 "header length|too short" "$WAN" info $F/tiny-wan22-t2v/model_index.json

# text encoder (umT5): encode-prompt and run text-encoder write their tensors; bad ids/usage exit 2
T=$(mktemp -d)
expect "wan encode-prompt" 0 "^$" "$WAN" encode-prompt --model $F/tiny-wan22-t2v --prompt "a cat" --negative-prompt "" --out $T/pe.safetensors
expect "wan encode-prompt --ids" 0 "^$" "$WAN" encode-prompt --model $F/tiny-wan22-t2v/text_encoder --ids 7,300,1 --out $T/ids.safetensors
expect "wan encode-prompt: bad id" 2 "outside the vocabulary" "$WAN" encode-prompt --model $F/tiny-wan22-t2v --ids 7,640,1 --out $T/x.safetensors
expect "wan encode-prompt: no tokenizer" 1 "no tokenizer" "$WAN" encode-prompt --model $F/tiny-wan22-t2v/text_encoder --prompt "a cat" --out $T/x.safetensors
expect "wan encode-prompt usage" 2 "usage: wan encode-prompt" "$WAN" encode-prompt --model $F/tiny-wan22-t2v
expect "wan run text-encoder" 0 "^$" "$WAN" run text-encoder --model $F/tiny-wan22-t2v --in $F/umt5/run_input.safetensors --out $T/te.safetensors
rm -rf "$T"

finish
