/* test_rng.c — wan_randn against torch.randn on a seeded CPU generator (tools/ref/dump_sampler.py):
 * bit-identical, for the scalar path (n < 16), the 16-wide path with and without a remainder, and a
 * full Wan latent (1x16x21x60x104, checked at every 211th element and the last 1000), for torch's
 * AVX2 kernel and its portable one. */
#include "test.h"

#include "core.h"
#include "rng.h"

#include <stdlib.h>
#include <time.h>

#define RNG "rng/randn.safetensors"

static const uint64_t k_seeds[] = { 0, 1, 42, 123456789, 4294967303ull /* 2^32 + 7 */,
                                    18446744073709551615ull };

/* Number of elements of got[] whose bits differ from ref[]; *max_abs gets the largest difference. */
static size_t count_diff(const float *got, const float *ref, size_t n, double *max_abs)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &ref[i], sizeof(float)) != 0) {
            bad++;
            double d = fabs((double)got[i] - (double)ref[i]);
            if (!(d <= *max_abs))
                *max_abs = d;
        }
    }
    return bad;
}

TEST(rng_randn_matches_torch)
{
    int sizes[40], n_sizes = 0;
    for (int n = 1; n <= 17; n++)
        sizes[n_sizes++] = n;
    const int more[] = { 31, 32, 33, 100, 1000, 1024 * 7 + 3 };
    for (size_t k = 0; k < sizeof more / sizeof *more; k++)
        sizes[n_sizes++] = more[k];
    size_t total = 0, bad = 0;
    double max_abs = 0;
    char name[96], err[512] = "";
    for (size_t si = 0; si < sizeof k_seeds / sizeof *k_seeds; si++) {
        for (int k = 0; k < n_sizes; k++) {
            snprintf(name, sizeof name, "seed%llu.n%d", (unsigned long long)k_seeds[si], sizes[k]);
            wan_host_tensor ref = { 0 };
            CHECK_RC(wan_safetensors_read(wan_test_fixture(RNG), name, WAN_DTYPE_F32, &ref, err, sizeof err),
                     WAN_OK, err);
            CHECK(wan_host_tensor_numel(&ref) == sizes[k]);
            float *got = malloc((size_t)sizes[k] * sizeof(float));
            CHECK(got != NULL);
            CHECK(wan_randn(k_seeds[si], (size_t)sizes[k], got) == WAN_OK);
            size_t b = count_diff(got, ref.data, (size_t)sizes[k], &max_abs);
            if (b)
                printf("    %s: %zu of %d values differ\n", name, b, sizes[k]);
            bad += b;
            total += (size_t)sizes[k];
            free(got);
            wan_host_tensor_free(&ref);
        }
    }
    printf("    %zu values over %zu seeds x %d sizes: %zu differ (max abs diff %.3g)\n", total,
           sizeof k_seeds / sizeof *k_seeds, n_sizes, bad, max_abs);
    CHECK(bad == 0);
}

static void check_big(const char *prefix, wan_randn_kernel kernel, uint64_t seed, size_t n, int *failed_)
{
    char name[96], err[512] = "";
    wan_host_tensor idx = { 0 }, val = { 0 };
    snprintf(name, sizeof name, "%s.seed%llu.n%zu.idx", prefix, (unsigned long long)seed, n);
    CHECK_RC(wan_safetensors_read(wan_test_fixture(RNG), name, WAN_DTYPE_I64, &idx, err, sizeof err), WAN_OK,
             err);
    snprintf(name, sizeof name, "%s.seed%llu.n%zu.val", prefix, (unsigned long long)seed, n);
    CHECK_RC(wan_safetensors_read(wan_test_fixture(RNG), name, WAN_DTYPE_F32, &val, err, sizeof err), WAN_OK,
             err);
    size_t m = (size_t)wan_host_tensor_numel(&idx);
    CHECK(m == (size_t)wan_host_tensor_numel(&val));
    float *got = malloc(n * sizeof(float)), *pick = malloc(m * sizeof(float));
    CHECK(got && pick);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(wan_randn_ex(seed, n, kernel, got) == WAN_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const int64_t *ix = idx.data;
    for (size_t i = 0; i < m; i++) {
        CHECK(ix[i] >= 0 && (size_t)ix[i] < n);
        pick[i] = got[ix[i]];
    }
    double max_abs = 0;
    size_t bad = count_diff(pick, val.data, m, &max_abs);
    printf("    %s seed %llu, %zu values (%.1f ms): %zu of %zu sampled values differ (max abs diff %.3g)\n",
           prefix, (unsigned long long)seed, n, (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6,
           bad, m, max_abs);
    free(got);
    free(pick);
    wan_host_tensor_free(&idx);
    wan_host_tensor_free(&val);
    CHECK(bad == 0);
}

TEST(rng_randn_latent_size)
{
    check_big("big", WAN_RANDN_TORCH_AVX2, 42, (size_t)1 * 16 * 21 * 60 * 104, failed_); /* A14B 832x480x81 */
    check_big("big", WAN_RANDN_TORCH_AVX2, 7, 100003, failed_); /* n % 16 = 3: the redrawn tail */
}

/* torch's portable kernel (ATEN_CPU_CAPABILITY=default when the fixtures were made) */
TEST(rng_randn_scalar_kernel)
{
    check_big("scalar", WAN_RANDN_TORCH_SCALAR, 42, (size_t)1 * 16 * 21 * 60 * 104, failed_);
    check_big("scalar", WAN_RANDN_TORCH_SCALAR, 7, 100003, failed_);
    float a[8];
    CHECK(wan_randn_ex(1, 8, (wan_randn_kernel)7, a) == WAN_ERR_INVALID_ARG);
}

TEST(rng_generator_stream)
{
    /* the stateful generator continues the stream: two draws of 8 = what torch gives for
     * randn(8); randn(8) after one manual_seed (scalar path, the cache carries over) */
    wan_torch_gen g;
    wan_torch_gen_seed(&g, 42);
    float a[16], b[8];
    wan_torch_gen_randn(&g, WAN_RANDN_TORCH_AVX2, a, 3);
    wan_torch_gen_randn(&g, WAN_RANDN_TORCH_AVX2, b, 5); /* 3 + 5: the cached sine of pair 2 is b[0] */
    float c[8];
    CHECK(wan_randn(42, 8, c) == WAN_OK);
    CHECK(memcmp(a, c, 3 * sizeof(float)) == 0);
    CHECK(memcmp(b, c + 3, 5 * sizeof(float)) == 0);
    /* reference MT19937 outputs for seed 5489 (the C++ std::mt19937 default) */
    wan_torch_gen_seed(&g, 5489);
    CHECK(wan_torch_gen_u32(&g) == 3499211612u);
    CHECK(wan_torch_gen_u32(&g) == 581869302u);
    CHECK(wan_randn(1, 4, NULL) == WAN_ERR_INVALID_ARG);
    CHECK(wan_randn(1, 0, NULL) == WAN_OK);
}
