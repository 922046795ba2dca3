/* test_sampler.c — schedulers against diffusers (tools/ref/dump_sampler.py): the timestep/sigma grids
 * and whole trajectories (fixed sample and model outputs, every prev_sample).
 * Tolerances: timesteps exact; sigmas <= 1e-6 (the float64 grid rounded once to float32: expected
 * to be exact); samples <= 1e-6 abs per step — the reference evaluates its per-step float32 scalars
 * with torch's ~1-ulp log/expm1 and MKL's solve, wan.c with correctly rounded ones, so a coefficient
 * may differ by one ulp (~1e-7 relative on O(1) values). */
#include "test.h"

#include "core.h"
#include "model_dir.h"
#include "sampler.h"

#include <stdlib.h>

#define GRIDS "sampler/grids.safetensors"
#define TRAJ "sampler/trajectories.safetensors"

static const int k_grid_steps[] = { 1, 2, 3, 4, 10, 40 };
static const double k_grid_shifts[] = { 1.0, 3.0, 5.0, 12.0 };
static const struct { int n; double s; } k_extra_grids[] = {
    { 40, 3.0 }, { 40, 12.0 }, { 50, 5.0 }, { 7, 3.7 }, { 25, 0.5 }, { 1000, 5.0 },
};

/* "3" for 3.0, "3p7" for 3.7, as the dump script names shifts */
static void shift_name(double s, char *buf, size_t len)
{
    snprintf(buf, len, "%g", s);
    for (char *p = buf; *p; p++)
        if (*p == '.')
            *p = 'p';
}

/* The fixture's UniPC config (tiny-wan22-t2v, flow_shift 3), or the configs the dump script builds
 * for FlowMatchEuler and DPM++. */
static int load_config(const char *kind, wan_scheduler_config *c)
{
    if (!strncmp(kind, "unipc", 5)) {
        char *json = NULL;
        size_t len = 0;
        wan_error err = { 0 };
        const char *path = wan_test_fixture("tiny-wan22-t2v/scheduler/scheduler_config.json");
        if (wan_read_file(path, &json, &len, &err) != WAN_OK)
            return 0;
        wan_status rc = wan_parse_scheduler_config(json, len, path, c, &err);
        wan_free(json);
        if (rc == WAN_OK && !strcmp(kind, "unipc_bh1"))
            snprintf(c->solver_type, sizeof c->solver_type, "bh1");
        return rc == WAN_OK;
    }
    wan_scheduler_config_default(c);
    c->num_train_timesteps = 1000;
    snprintf(c->prediction_type, sizeof c->prediction_type, "flow_prediction");
    c->use_flow_sigmas = 1;
    if (!strcmp(kind, "euler")) {
        c->kind = WAN_SCHEDULER_EULER;
        return 1;
    }
    c->kind = WAN_SCHEDULER_DPMPP;
    c->solver_order = 2;
    snprintf(c->solver_type, sizeof c->solver_type, "midpoint");
    return 1;
}

/* Compares one grid; returns 0 on failure (message printed). */
static int check_grid(const char *kind, int n, double shift, double *max_sigma_diff)
{
    char sname[32], name[128], err[512] = "";
    shift_name(shift, sname, sizeof sname);
    wan_scheduler_config cfg;
    if (!load_config(kind, &cfg)) {
        printf("    %s: cannot load the config\n", kind);
        return 0;
    }
    wan_scheduler_params p = wan_scheduler_default_params();
    p.shift = shift;
    wan_scheduler_t *s = NULL;
    if (wan_scheduler_create(&cfg, n, &p, &s, err, sizeof err) != WAN_OK) {
        printf("    %s n=%d shift=%g: %s\n", kind, n, shift, err);
        return 0;
    }
    wan_host_tensor ts = { 0 }, sg = { 0 };
    int ok = 1;
    snprintf(name, sizeof name, "%s.n%d.s%s.timesteps", kind, n, sname);
    int is_euler = !strcmp(kind, "euler");
    if (wan_safetensors_read(wan_test_fixture(GRIDS), name, is_euler ? WAN_DTYPE_F32 : WAN_DTYPE_I64, &ts,
                             err, sizeof err) != WAN_OK) {
        printf("    %s\n", err);
        ok = 0;
        goto done;
    }
    snprintf(name, sizeof name, "%s.n%d.s%s.sigmas", kind, n, sname);
    if (wan_safetensors_read(wan_test_fixture(GRIDS), name, WAN_DTYPE_F32, &sg, err, sizeof err) != WAN_OK) {
        printf("    %s\n", err);
        ok = 0;
        goto done;
    }
    if (wan_host_tensor_numel(&ts) != n || wan_host_tensor_numel(&sg) != n + 1) {
        printf("    %s: fixture sizes %lld/%lld for n=%d\n", name, (long long)wan_host_tensor_numel(&ts),
               (long long)wan_host_tensor_numel(&sg), n);
        ok = 0;
        goto done;
    }
    const float *got_t = wan_scheduler_timesteps(s), *got_s = wan_scheduler_sigmas(s);
    for (int i = 0; i < n && ok; i++) {
        double want = is_euler ? (double)((float *)ts.data)[i] : (double)((int64_t *)ts.data)[i];
        if ((double)got_t[i] != want) {
            printf("    %s n=%d shift=%g: timestep %d is %.9g, diffusers %.9g\n", kind, n, shift, i,
                   got_t[i], want);
            ok = 0;
        }
    }
    for (int i = 0; i <= n; i++) {
        double d = fabs((double)got_s[i] - (double)((float *)sg.data)[i]);
        if (d > *max_sigma_diff)
            *max_sigma_diff = d;
        if (d > 1e-6) {
            printf("    %s n=%d shift=%g: sigma %d is %.9g, diffusers %.9g\n", kind, n, shift, i, got_s[i],
                   ((float *)sg.data)[i]);
            ok = 0;
            break;
        }
    }
done:
    wan_host_tensor_free(&ts);
    wan_host_tensor_free(&sg);
    wan_scheduler_free(s);
    return ok;
}

static void grids_for(const char *kind, int *failed_)
{
    double max_diff = 0;
    int cases = 0;
    for (size_t a = 0; a < sizeof k_grid_steps / sizeof *k_grid_steps; a++)
        for (size_t b = 0; b < sizeof k_grid_shifts / sizeof *k_grid_shifts; b++, cases++)
            CHECK(check_grid(kind, k_grid_steps[a], k_grid_shifts[b], &max_diff));
    for (size_t a = 0; a < sizeof k_extra_grids / sizeof *k_extra_grids; a++, cases++)
        CHECK(check_grid(kind, k_extra_grids[a].n, k_extra_grids[a].s, &max_diff));
    printf("    %s: %d grids, timesteps identical, max sigma diff %.3g\n", kind, cases, max_diff);
}

TEST(sampler_grid_unipc) { grids_for("unipc", failed_); }
TEST(sampler_grid_euler) { grids_for("euler", failed_); }
TEST(sampler_grid_dpm) { grids_for("dpm", failed_); }

/* ---- trajectories ----------------------------------------------------------------------------- */

static const struct {
    const char *kind;
    int n;
    double shift;
    int disable[2], n_disable;
} k_traj[] = {
    { "unipc", 1, 3.0, { 0 }, 0 },  { "unipc", 2, 3.0, { 0 }, 0 },     { "unipc", 3, 1.0, { 0 }, 0 },
    { "unipc", 4, 3.0, { 0 }, 0 },  { "unipc", 10, 12.0, { 0 }, 0 },   { "unipc", 40, 12.0, { 0 }, 0 },
    { "unipc_bh1", 6, 5.0, { 0 }, 0 }, { "unipc_nocorr", 6, 3.0, { 0, 2 }, 2 },
    { "euler", 1, 3.0, { 0 }, 0 },  { "euler", 4, 5.0, { 0 }, 0 },     { "euler", 10, 7.0, { 0 }, 0 },
    { "dpm", 1, 3.0, { 0 }, 0 },    { "dpm", 2, 3.0, { 0 }, 0 },       { "dpm", 4, 5.0, { 0 }, 0 },
    { "dpm", 10, 12.0, { 0 }, 0 },  { "dpm", 20, 3.0, { 0 }, 0 },
};

static int read_f32(const char *name, wan_host_tensor *t, size_t want_n)
{
    char err[512];
    if (wan_safetensors_read(wan_test_fixture(TRAJ), name, WAN_DTYPE_F32, t, err, sizeof err) != WAN_OK) {
        printf("    %s\n", err);
        return 0;
    }
    if ((size_t)wan_host_tensor_numel(t) != want_n) {
        printf("    %s: %lld elements, expected %zu\n", name, (long long)wan_host_tensor_numel(t), want_n);
        wan_host_tensor_free(t);
        return 0;
    }
    return 1;
}

enum traj_mode {
    TRAJ_FORCED,   /* each step starts from diffusers' previous sample: the error of one step     */
    TRAJ_FREE,     /* each step starts from wan.c's previous sample, as in the pipeline          */
    TRAJ_IN_PLACE  /* TRAJ_FREE with prev_sample == sample                                      */
};

/* Max abs difference of two float arrays (NaN counts as infinite). */
static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t k = 0; k < n; k++) {
        double e = fabs((double)a[k] - (double)b[k]);
        if (!(e <= d))
            d = isnan(e) ? INFINITY : e;
    }
    return d;
}

/* Runs trajectory case c and returns the max abs difference over all its steps, or -1 on failure.
 * diffusers' UniPC with solver_type bh1 returns NaN on the last step (B(h) = h = -inf times the
 * zero order-1 residual); wan.c returns the x0 prediction there, which is checked instead. */
static double run_trajectory(int c, enum traj_mode mode, double tol)
{
    enum { NEL = 1 * 16 * 2 * 4 * 6 };
    char sname[32], base[96], name[160], err[512] = "";
    shift_name(k_traj[c].shift, sname, sizeof sname);
    snprintf(base, sizeof base, "%s.n%d.s%s", k_traj[c].kind, k_traj[c].n, sname);
    wan_scheduler_config cfg;
    if (!load_config(k_traj[c].kind, &cfg))
        return -1;
    wan_scheduler_params p = wan_scheduler_default_params();
    p.shift = k_traj[c].shift;
    p.disable_corrector = k_traj[c].disable;
    p.n_disable_corrector = k_traj[c].n_disable;
    wan_scheduler_t *s = NULL;
    if (wan_scheduler_create(&cfg, k_traj[c].n, &p, &s, err, sizeof err) != WAN_OK) {
        printf("    %s: %s\n", base, err);
        return -1;
    }
    static float x[NEL], y[NEL];
    wan_host_tensor t0 = { 0 };
    snprintf(name, sizeof name, "%s.sample", base);
    if (!read_f32(name, &t0, NEL)) {
        wan_scheduler_free(s);
        return -1;
    }
    memcpy(x, t0.data, sizeof x);
    wan_host_tensor_free(&t0);
    double worst = 0;
    for (int i = 0; i < k_traj[c].n && worst >= 0; i++) {
        wan_host_tensor v = { 0 }, ref = { 0 };
        snprintf(name, sizeof name, "%s.v%02d", base, i);
        int ok = read_f32(name, &v, NEL);
        snprintf(name, sizeof name, "%s.prev%02d", base, i);
        ok = ok && read_f32(name, &ref, NEL);
        float *dst = mode == TRAJ_IN_PLACE ? x : y;
        float x0[NEL];
        for (int k = 0; ok && k < NEL; k++)
            x0[k] = x[k] - wan_scheduler_sigmas(s)[i] * ((float *)v.data)[k];
        if (ok && wan_scheduler_step(s, v.data, x, dst, NEL, err, sizeof err) != WAN_OK) {
            printf("    %s step %d: %s\n", base, i, err);
            ok = 0;
        }
        const float *want = ok ? ref.data : NULL;
        if (ok && isnan(((float *)ref.data)[0]) && !strcmp(k_traj[c].kind, "unipc_bh1") &&
            i == k_traj[c].n - 1)
            want = x0;
        if (ok) {
            double d = max_abs_diff(dst, want, NEL);
            if (d > worst)
                worst = d;
            if (d > tol) {
                printf("    %s step %d: max abs diff %.3g > %.3g\n", base, i, d, tol);
                ok = 0;
            }
            memcpy(x, mode == TRAJ_FORCED ? ref.data : dst, sizeof x);
        }
        wan_host_tensor_free(&v);
        wan_host_tensor_free(&ref);
        if (!ok)
            worst = -1;
    }
    if (worst >= 0 && wan_scheduler_step_index(s) != k_traj[c].n)
        worst = -1;
    wan_scheduler_free(s);
    return worst;
}

/* One step from diffusers' own previous sample: <= 1e-6 abs (see the top of this file). */
TEST(sampler_steps)
{
    for (size_t c = 0; c < sizeof k_traj / sizeof *k_traj; c++) {
        double d = run_trajectory((int)c, TRAJ_FORCED, 1e-6);
        CHECK_MSG(d >= 0, "case %s n=%d shift=%g", k_traj[c].kind, k_traj[c].n, k_traj[c].shift);
        printf("    %-13s n=%-2d shift=%-4g: every step within %.3g of diffusers\n", k_traj[c].kind,
               k_traj[c].n, k_traj[c].shift, d);
    }
}

/* Whole trajectories from wan.c's own samples. The one-ulp lambda differences of each step carry
 * into the next through the sample and the history, so the bound is the per-step 1e-6 times the
 * largest step count here (40), with the samples growing to |x| ~ 5. */
TEST(sampler_trajectories)
{
    for (size_t c = 0; c < sizeof k_traj / sizeof *k_traj; c++) {
        double d = run_trajectory((int)c, TRAJ_FREE, 1e-6 * k_traj[c].n);
        CHECK_MSG(d >= 0, "case %s n=%d shift=%g", k_traj[c].kind, k_traj[c].n, k_traj[c].shift);
        printf("    %-13s n=%-2d shift=%-4g: trajectory within %.3g of diffusers\n", k_traj[c].kind,
               k_traj[c].n, k_traj[c].shift, d);
    }
}

TEST(sampler_in_place_and_reset)
{
    /* stepping in place gives the same numbers */
    for (int c = 0; c < (int)(sizeof k_traj / sizeof *k_traj); c++)
        CHECK(run_trajectory(c, TRAJ_IN_PLACE, 1e-6 * k_traj[c].n) == run_trajectory(c, TRAJ_FREE, 1.0));
    /* reset replays the same trajectory */
    wan_scheduler_config cfg;
    CHECK(load_config("unipc", &cfg));
    wan_scheduler_t *s = NULL;
    char err[512] = "";
    CHECK_RC(wan_scheduler_create(&cfg, 5, NULL, &s, err, sizeof err), WAN_OK, err);
    float a[64], b[64], v[64];
    for (int pass = 0; pass < 2; pass++) {
        float *x = pass ? b : a;
        for (int k = 0; k < 64; k++)
            x[k] = (float)k / 64.0f - 0.5f;
        for (int i = 0; i < 5; i++) {
            for (int k = 0; k < 64; k++)
                v[k] = 0.25f * (float)((k * 7 + i * 3) % 11) - x[k];
            CHECK_RC(wan_scheduler_step(s, v, x, x, 64, err, sizeof err), WAN_OK, err);
        }
        CHECK(wan_scheduler_step_index(s) == 5);
        wan_scheduler_reset(s);
        CHECK(wan_scheduler_step_index(s) == 0);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    wan_scheduler_free(s);
}

TEST(sampler_errors)
{
    wan_scheduler_config cfg;
    CHECK(load_config("unipc", &cfg));
    wan_scheduler_t *s = (wan_scheduler_t *)&cfg; /* must be reset to NULL on failure */
    char err[512] = "";
    CHECK_RC(wan_scheduler_create(&cfg, 0, NULL, &s, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK(s == NULL && strstr(err, "num_inference_steps 0"));
    wan_scheduler_params p = wan_scheduler_default_params();
    p.shift = -1; /* negative: "use the config" is only 0; a negative override is taken as 0 */
    CHECK_RC(wan_scheduler_create(&cfg, 4, &p, &s, err, sizeof err), WAN_OK, err);
    CHECK(wan_scheduler_shift(s) == 3.0);
    wan_scheduler_free(s);
    wan_scheduler_config bad = cfg;
    snprintf(bad.prediction_type, sizeof bad.prediction_type, "epsilon");
    CHECK_RC(wan_scheduler_create(&bad, 4, NULL, &s, err, sizeof err), WAN_ERR_UNSUPPORTED, err);
    CHECK(strstr(err, "flow_prediction") != NULL);
    bad = cfg;
    bad.solver_order = 3;
    CHECK_RC(wan_scheduler_create(&bad, 4, NULL, &s, err, sizeof err), WAN_ERR_UNSUPPORTED, err);
    CHECK(strstr(err, "solver_order 3") != NULL);
    /* steps: size change, too many steps, NULLs */
    CHECK_RC(wan_scheduler_create(&cfg, 2, NULL, &s, err, sizeof err), WAN_OK, err);
    float x[32] = { 0 }, v[32] = { 0 };
    CHECK_RC(wan_scheduler_step(s, v, x, x, 32, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_scheduler_step(s, v, x, x, 16, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK(strstr(err, "16 elements") != NULL);
    CHECK_RC(wan_scheduler_step(s, NULL, x, x, 32, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK_RC(wan_scheduler_step(s, v, x, x, 32, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_scheduler_step(s, v, x, x, 32, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK(strstr(err, "all 2 steps are done") != NULL);
    wan_scheduler_free(s);
    /* allocation failures leave nothing behind */
    size_t before = wan_mem_current();
    for (long k = 1; k <= 8; k++) {
        wan_mem_fail_after(k);
        wan_status rc = wan_scheduler_create(&cfg, 3, NULL, &s, err, sizeof err);
        if (rc == WAN_OK)
            rc = wan_scheduler_step(s, v, x, x, 32, err, sizeof err);
        wan_mem_fail_after(0);
        CHECK(rc == WAN_OK || rc == WAN_ERR_NOMEM);
        wan_scheduler_free(s);
        s = NULL;
    }
    CHECK(wan_mem_current() == before);
}

/* The last step lands exactly on the x0 prediction x - sigma*v for every kind (sigma_N = 0). */
TEST(sampler_last_step_is_x0)
{
    const char *kinds[] = { "unipc", "euler", "dpm" };
    for (int k = 0; k < 3; k++) {
        wan_scheduler_config cfg;
        CHECK(load_config(kinds[k], &cfg));
        wan_scheduler_t *s = NULL;
        char err[512] = "";
        CHECK_RC(wan_scheduler_create(&cfg, 1, NULL, &s, err, sizeof err), WAN_OK, err);
        float x[16], v[16], y[16];
        for (int j = 0; j < 16; j++) {
            x[j] = 0.3f * (float)j - 2.0f;
            v[j] = 1.7f - 0.2f * (float)j;
        }
        CHECK_RC(wan_scheduler_step(s, v, x, y, 16, err, sizeof err), WAN_OK, err);
        float sigma = wan_scheduler_sigmas(s)[0];
        for (int j = 0; j < 16; j++) {
            float want = k == 1 ? x[j] + (0.0f - sigma) * v[j] : x[j] - sigma * v[j];
            CHECK_MSG(y[j] == want, "%s element %d: %.9g vs %.9g", kinds[k], j, y[j], want);
        }
        wan_scheduler_free(s);
    }
}
