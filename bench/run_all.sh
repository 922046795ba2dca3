#!/bin/sh
# Builds and runs every benchmark, wan.c beside its reference, with modest sizes (a few minutes on 2 cores).
# Usage: bench/run_all.sh [--full] [--threads N]   (from the repository root)
#   --full   the sizes of docs/PERFORMANCE.md: GEMM at 1,560 tokens, the A14B-width transformer with 2 layers
#            at 1,560 and 6,240 tokens in f32 and bf16 (needs ~10 GB of memory and tens of minutes on 2 cores)
# Leaves OPENBLAS_CORETYPE as the environment has it. Logs go to stdout.
set -e
full=0
threads=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
    --full) full=1 ;;
    --threads) threads=$2; shift ;;
    *) echo "usage: bench/run_all.sh [--full] [--threads N]" >&2; exit 2 ;;
    esac
    shift
done
B=${BUILD:-build}
make -s -j2 bench BUILD="$B"
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
     "load $(cut -d' ' -f1-3 /proc/loadavg), threads $threads, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
echo "== peak"
"$B/bench/peak" --threads "$threads"
if [ $full = 1 ]; then
    echo "== gemm (1,560 tokens)"
    "$B/bench/gemm" --threads "$threads" --m 1560 --reps 2
    for dt in f32 bf16; do
        echo "== transformer (A14B width, 2 layers, 1,560 tokens, $dt weights, best of 2)"
        "$B/bench/transformer" --preset a14b --threads "$threads" --dtype $dt --reps 2
        echo "== transformer (A14B width, 2 layers, 6,240 tokens, $dt weights)"
        "$B/bench/transformer" --preset a14b --grid 4,30,52 --threads "$threads" --dtype $dt
    done
else
    echo "== gemm (390 tokens)"
    "$B/bench/gemm" --threads "$threads" --m 390 --reps 2
    echo "== transformer (A14B width, 1 layer, 390 tokens, 128 text rows, bf16 weights)"
    "$B/bench/transformer" --preset a14b --layers 1 --grid 1,15,26 --text-len 128 --threads "$threads"
fi
if [ -x "$B/bench/vae" ]; then
    echo "== vae"
    "$B/bench/vae" --threads "$threads"
fi
echo "== pipeline (tiny model)"
"$B/bench/pipeline" --threads "$threads"
