/* test.h — a minimal test harness: TEST(name) registers a case; CHECK/CHECK_RC fail it with a
 * message. All cases are linked into one binary (build/wan_tests) that prints one line per case and a
 * final "N passed, N failed" (", N skipped" appended when a case was skipped). */
#ifndef WAN_TEST_H
#define WAN_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "wan.h"

typedef void (*wan_test_fn)(int *failed);
void wan_test_register(const char *name, const char *file, wan_test_fn fn);

#define TEST(name)                                                                                \
    static void test_##name(int *failed_);                                                        \
    __attribute__((constructor)) static void register_##name(void)                                \
    {                                                                                             \
        wan_test_register(#name, __FILE__, test_##name);                                          \
    }                                                                                             \
    static void test_##name(int *failed_)

/* Fails the case (and returns from it) when cond is false. */
#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            printf("    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                   \
            *failed_ = 1;                                                                         \
            return;                                                                               \
        }                                                                                         \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                      \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            printf("    %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                   \
            printf(__VA_ARGS__);                                                                  \
            printf("\n");                                                                         \
            *failed_ = 1;                                                                         \
            return;                                                                               \
        }                                                                                         \
    } while (0)

/* Ends the case as skipped (counted apart from passed and failed) and prints why. For cases that need
 * hardware this machine lacks; never for a case that could run. */
#define SKIP(...)                                                                                 \
    do {                                                                                          \
        printf("    [ SKIP ] ");                                                                  \
        printf(__VA_ARGS__);                                                                      \
        printf("\n");                                                                             \
        *failed_ = -1;                                                                            \
        return;                                                                                   \
    } while (0)

/* Expects a wan_status; prints the error message held in errbuf when it differs. */
#define CHECK_RC(expr, want, errbuf)                                                              \
    do {                                                                                          \
        int rc_ = (int)(expr);                                                                    \
        if (rc_ != (int)(want)) {                                                                 \
            printf("    %s:%d: %s returned %d (%s), expected %d: %s\n", __FILE__, __LINE__, #expr, \
                   rc_, wan_status_str((wan_status)rc_), (int)(want), (errbuf));                  \
            *failed_ = 1;                                                                         \
            return;                                                                               \
        }                                                                                         \
    } while (0)

/* Path of a fixture file: tests/fixtures/<rel> relative to the repository root (the tests run from
 * there; WAN_FIXTURES overrides the folder). */
const char *wan_test_fixture(const char *rel);
/* Reads tensor `name` of fixture file `rel` (under the fixtures root) as `dtype` into *t (the caller frees it
 * with wan_host_tensor_free); prints the reader's message and returns 0 on failure, 1 on success. */
int wan_test_read(const char *rel, const char *name, wan_dtype dtype, wan_host_tensor *t);
/* Reference attention in double (tests/test_dit_ops.c): per head n < H, out[i] = softmax_j(scale·<q_i, k_j>)·v
 * over the hd columns n·hd.., no mask; every matrix row-major with its own row stride. The last key is counted
 * last_w times (backend.h; 1: plain attention). */
void wan_test_naive_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                              float *out, int64_t ldo, int64_t Lq, int64_t Lk, int H, int hd, double scale,
                              double last_w);

struct wan_dit;
struct wan_backend;
/* Loads fixture model `fixture` (tests/test_dit.c), its first transformer into *d and a 2-thread CPU backend into
 * *be. On failure it frees what it made, writes the message into err and returns 0; on success the caller frees
 * *be, *d and *m (wan_backend_free, wan_dit_free, wan_model_free). */
int wan_test_load_dit(const char *fixture, wan_model_t **m, struct wan_dit *d, struct wan_backend **be, char *err,
                      size_t errlen);

/* Compares two float arrays; prints "name: max abs X, max rel Y (tol Z)" and returns 1 when
 * max|a-b| <= tol_rel * max|ref|. */
int wan_test_compare(const char *name, const float *got, const float *ref, size_t n, double tol_rel);

#endif /* WAN_TEST_H */
