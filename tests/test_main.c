/* test_main.c — runs every registered case (or those whose name contains argv[1]). */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include <stdlib.h>

#define MAX_TESTS 1024
typedef struct test_case { const char *name, *file; wan_test_fn fn; } test_case;
static test_case g_tests[MAX_TESTS];
static int g_n;

void wan_test_register(const char *name, const char *file, wan_test_fn fn)
{
    if (g_n < MAX_TESTS)
        g_tests[g_n++] = (test_case){ name, file, fn };
}

const char *wan_test_fixture(const char *rel)
{
    static char buf[8][1024];
    static int k;
    const char *root = getenv("WAN_FIXTURES");
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", root ? root : "tests/fixtures", rel);
    return b;
}

int wan_test_read(const char *rel, const char *name, wan_dtype dtype, wan_host_tensor *t)
{
    char err[512];
    if (wan_safetensors_read(wan_test_fixture(rel), name, dtype, t, err, sizeof err) != WAN_OK) {
        printf("    %s\n", err);
        return 0;
    }
    return 1;
}

int wan_test_compare(const char *name, const float *got, const float *ref, size_t n, double tol_rel)
{
    double max_abs = 0, max_ref = 0, max_rel = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= max_abs)) { /* also catches NaN */
            max_abs = isnan(d) ? INFINITY : d;
            at = i;
        }
        double r = fabs((double)ref[i]);
        if (r > max_ref)
            max_ref = r;
        if (r > 1e-6 && d / r > max_rel)
            max_rel = d / r;
    }
    int ok = max_abs <= tol_rel * max_ref;
    printf("    %s: %zu values, max abs diff %.3g (at %zu), max rel diff %.3g, max|ref| %.3g, bound %.3g %s\n",
           name, n, max_abs, at, max_rel, max_ref, tol_rel * max_ref, ok ? "ok" : "EXCEEDED");
    return ok;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < g_n; i++) {
        if (argc > 1 && !strstr(g_tests[i].name, argv[1]))
            continue;
        int f = 0;
        printf("[ RUN  ] %s\n", g_tests[i].name);
        g_tests[i].fn(&f);
        printf("[ %s ] %s\n", f > 0 ? "FAIL" : f < 0 ? "SKIP" : " OK ", g_tests[i].name);
        f > 0 ? failed++ : f < 0 ? skipped++ : passed++;
    }
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
