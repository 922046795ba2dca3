/* bench/peak.c — attainable f32 FMA throughput of this machine, per core and with every thread (and vdpbf16ps
 * throughput where AVX512-BF16 exists): the ceiling bench/gemm.c and bench/transformer.c are held against.
 *
 *   build/bench/peak [--threads N] [--seconds S]
 *
 * Register-only FMA chains (no memory traffic), best of 3 runs. On a shared or throttled machine the figure is
 * what this process could get right now; the CPU seconds show whether the threads got their cores. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    int threads = bench_max_threads();
    double seconds = 0.3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
    }
    if (threads < 1)
        threads = 1;
    const wan_cpu_info ci = wan_cpu_get_info();
    printf("cpu: avx2 %d, avx512 %d, avx512_bf16 %d; kernels %s; %d threads\n", ci.avx2, ci.avx512, ci.avx512_bf16,
           wan_cpu_kernel_name(), threads);
    if (!ci.avx2) {
        printf("peak f32: not measured (no AVX2/FMA)\n");
        return 0;
    }
    double c1 = 0.0, cn = 0.0;
    const double one = bench_peak_gflops(BENCH_PEAK_F32, 1, seconds, 3, &c1);
    const double all = bench_peak_gflops(BENCH_PEAK_F32, threads, seconds, 3, &cn);
    printf("peak f32 FMA (%s): one core %.1f GFLOP/s per CPU second (%.1f wall); %d threads %.1f GFLOP/s wall "
           "(%.1f per CPU second; ideal %.1f)\n", ci.avx512 ? "zmm" : "ymm", c1, one, threads, all, cn, c1 * threads);
    if (all < 0.8 * c1 * threads)
        printf("note: the threads got %.0f%% of %d cores: the machine is shared or throttled right now\n",
               100.0 * all / (c1 * threads), threads);
    if (ci.avx512_bf16) {
        double b1 = 0.0;
        bench_peak_gflops(BENCH_PEAK_BF16, 1, seconds, 3, &b1);
        const double bn = bench_peak_gflops(BENCH_PEAK_BF16, threads, seconds, 3, NULL);
        printf("peak bf16 dot (vdpbf16ps): one core %.1f GFLOP/s per CPU second; %d threads %.1f GFLOP/s wall\n", b1,
               threads, bn);
    } else {
        printf("peak bf16 dot (vdpbf16ps): not available on this CPU\n");
    }
    printf("RESULT peak_f32_core %.1f peak_f32_total %.1f threads %d\n", c1, all, threads);
    return 0;
}
