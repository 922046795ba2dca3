#!/bin/bash
# The GPU checklist of docs/CUDA.md as one time-boxed script, for a lent GPU machine that has the CUDA runtime
# but not the project's Debian libraries. Here: `make cuda && sh scripts/gpu_bundle.sh`; there (device tool,
# carry gpu-bundle.tar.xz): `bash scripts/gpu_check.sh [steps]`. Steps, in order of priority: ops flash model
# workbench bench (the default: all five), or experiments (dev/cuda/flash_experiments.cuh: validation, timings), or
# cpu (the host CPU's SIMD kernels: the CPU tests that need no video, bench/peak, bench/gemm and bench/transformer
# without its torch side; on a host with
# AVX-512 this is where the AVX-512 and AVX512-BF16 paths run at all), or amx (only the bf16-product tests and
# transformer runs).
# Writes each step's log and a summary to $OUT (or ./gpu-logs), then packs the logs into logs.tgz.
cd "$(dirname "$0")/.."
LOG=${OUT:-gpu-logs}; mkdir -p "$LOG"
STEPS=${1:-ops flash model workbench bench}
python3 -c "import tarfile; tarfile.open('gpu-bundle.tar.xz').extractall()" || exit 1
B=gpu-bundle/bin
export PATH=$PATH:/usr/local/cuda/bin
CUDA_LIB=$(dirname "$(find /usr/local /opt -name 'libcublasLt.so.13*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=$PWD/gpu-bundle/lib:/usr/local/cuda/lib64:$CUDA_LIB
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-16}
SUM=$LOG/summary.txt
step() {  # step NAME SECONDS command...
  local name=$1 secs=$2; shift 2
  local t0=$(date +%s.%N)
  echo "=== $name: $*" | tee -a "$LOG/$name.log"
  timeout -k 5 "$secs" "$@" >>"$LOG/$name.log" 2>&1; local rc=$?
  local t1=$(date +%s.%N)
  printf '%-28s rc=%-3s %6.1fs  %s\n' "$name" "$rc" "$(echo "$t1 - $t0" | bc 2>/dev/null || python3 -c "print($t1-$t0)")" \
    "$(grep -E 'passed, |op checks|FAIL|failed' "$LOG/$name.log" | tail -1)" | tee -a "$SUM"
  return $rc
}
{ nvidia-smi -L; nvidia-smi --query-gpu=name,clocks.max.sm,memory.total,driver_version --format=csv; 
  echo "cublasLt: $CUDA_LIB"; ldd $B/wan_tests | grep -E 'not found|cublas|cudart'; } 2>&1 | tee "$LOG/env.log"
for s in $STEPS; do case $s in
ops)
  step ops 120 $B/wan_tests backend ;;
flash)
  step flash_layout 30 $B/attention_forward layout
  step flash_v3 60 $B/attention_forward validate 3 ||
    step flash_v3_memcheck 90 compute-sanitizer --tool memcheck $B/attention_forward validate 3
  step flash_all 90 $B/attention_forward validate ;;
model)
  step device 150 $B/wan_tests device
  step vae_backend 120 $B/wan_tests vae_backend ;;
workbench)
  for p in matmul_bf16 conv3d layernorm_modulate; do step wb_$p 60 $B/$p validate; done ;;
bench)
  # the production kernels and their predecessors; v1 and v2 (the slow references, ~40 s) only on request
  step bench_attention 90 sh -c "for v in 3 4 8 11; do $B/attention_forward benchmark \$v; done"
  step bench_gpu_8k 90 $B/gpu --tokens 8192 --no-vae
  step bench_gpu 240 $B/gpu
  step bench_matmul 60 $B/matmul_bf16 benchmark ;;
cpu)
  { lscpu | grep -E 'Model name|^CPU\(s\)|Thread'; grep -o 'avx512[a-z_0-9]*\|amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } \
    >"$LOG/cpu_info.log" 2>&1
  for f in cpu_kernels gemm_ dit_ops dit_parity dit_bf16 umt5_ vae_ pipeline_t2v_unipc lora_kernel; do
    step cpu_$f 120 $B/wan_tests $f
  done
  step cpu_peak 60 $B/peak
  step cpu_gemm 180 $B/gemm --threads 16 --dtype all --reps 2
  for d in f32 bf16; do
    step cpu_transformer_$d 120 $B/transformer --preset a14b --layers 2 --threads 16 --dtype $d --reps 3 \
      --prompt-len 128 --no-ref
  done
  step cpu_transformer_bf16_products 120 $B/transformer --preset a14b --layers 2 --threads 16 --dtype bf16 \
    --reps 3 --prompt-len 128 --no-ref --linear bf16
  for a in avx2 avx512; do
    step cpu_transformer_6k_att_$a 120 $B/transformer --preset a14b --layers 2 --threads 16 --dtype bf16 \
      --grid 4,30,52 --reps 2 --prompt-len 128 --no-ref --attention $a
  done
  step cpu_transformer_6k_bf16_products 120 $B/transformer --preset a14b --layers 2 --threads 16 --dtype bf16 \
    --grid 4,30,52 --reps 2 --prompt-len 128 --no-ref --linear bf16
  step cpu_transformer_bf16_amx 120 $B/transformer --preset a14b --layers 2 --threads 16 --dtype bf16 \
    --reps 3 --prompt-len 128 --no-ref --linear bf16 --attention amx
  step cpu_transformer_6k_bf16_amx 120 $B/transformer --preset a14b --layers 2 --threads 16 --dtype bf16 \
    --grid 4,30,52 --reps 2 --prompt-len 128 --no-ref --linear bf16 --attention amx ;;
amx)
  for f in gemm_ dit_ops dit_bf16; do step amx_$f 120 $B/wan_tests $f; done
  for g in 1,30,52 4,30,52; do
    step amx_transformer_$g 120 $B/transformer --preset a14b --layers 2 --threads 16 --dtype bf16 --grid $g \
      --reps 2 --prompt-len 128 --no-ref --linear bf16
    step amx_transformer_att_$g 120 $B/transformer --preset a14b --layers 2 --threads 16 --dtype bf16 --grid $g \
      --reps 2 --prompt-len 128 --no-ref --linear bf16 --attention amx
  done ;;
experiments)
  for v in 15 16 17; do step exp_v$v 20 $B/attention_forward validate $v; done
  step exp_bench 80 sh -c "for v in 17 16 11; do timeout 20 $B/attention_forward benchmark \$v; done" ;;
*)
  echo "gpu_check: unknown step '$s' (ops flash model workbench bench experiments cpu amx)" | tee -a "$SUM" ;;
esac; done
cat "$SUM"
# at most 8 files come back from a device run: one archive of every log
tar czf "$LOG/logs.tgz" -C "$LOG" $(cd "$LOG" && ls *.log summary.txt 2>/dev/null) && rm -f "$LOG"/*.log
