/* sampler.c — diffusers' flow-matching schedulers, reproduced operation by operation.
 *
 * Precision follows the reference exactly: the grids are built in float64 (numpy) and stored as
 * float32; the per-step scalars (alpha, lambda, h, the B(h) coefficients, rho) are float32 0-dim
 * tensors in diffusers, so they are float here, and every tensor expression is evaluated in the
 * same order with the same roundings (a*x - b*m is round(round(a*x) - round(b*m)), never fused).
 * torch's float32 expm1 (SLEEF) is reproduced bit for bit (torch_math.c); its log and exp come from
 * Intel MKL's VML, which cannot be re-derived, so they are computed in double and rounded to float
 * here: about 5% of log values then differ from torch's by one ulp, and the cancellation in
 * h = lambda_t - lambda_s magnifies that to ~1e-7..1e-6 in a step's output (docs/MODEL.md,
 * "Schedulers").
 *
 * Each step is split in two: the per-step scalars, computed here on the host into a wan_sampler_update, and
 * the element loop, which is the backend's sampler_update (backend_cpu.c holds the CPU loop; the CUDA one
 * is the same sequence of explicitly rounded operations).
 *
 * Needs -std=c11 (no implicit a*b+c contraction) and no -ffast-math (the last step relies on
 * log(0) = -inf). */
#include "sampler.h"
#include "backend.h"
#include "torch_math.h"

#include <math.h>
#include <string.h>

/* ---- grids ------------------------------------------------------------------------------------ */

/* numpy.linspace(start, stop, num)[i] for num >= 1: start + i*step with step = (stop-start)/(num-1),
 * the last point set to stop exactly. */
static double np_linspace(double start, double stop, int num, int i)
{
    if (num == 1)
        return 0.0 * (stop - start) + start;
    if (i == num - 1)
        return stop;
    double step = (stop - start) / (double)(num - 1);
    return (double)i * step + start;
}

/* The flow shift S·s / (1 + (S-1)·s), in the evaluation order of the reference. */
static double shift_d(double s, double S) { return S * s / (1.0 + (S - 1.0) * s); }

static float shift_f(float s, double S)
{
    float Sf = (float)S, Sm1 = (float)(S - 1.0);
    return Sf * s / (1.0f + Sm1 * s);
}

/* UniPC, use_flow_sigmas: s_i = linspace(1, 1/T, N+1)[i] (i < N), shifted; s_0 pulled 1e-6 below 1. */
static void grid_unipc(const wan_scheduler_config *c, int N, double S, float *ts, float *sg)
{
    double T = (double)c->num_train_timesteps;
    double last = 0;
    for (int i = 0; i < N; i++) {
        double s = shift_d(np_linspace(1.0, 1.0 / T, N + 1, i), S);
        if (i == 0 && fabs(s - 1.0) < 1e-6)
            s -= 1e-6;
        ts[i] = (float)(int64_t)(s * T); /* torch float64 -> int64 truncates */
        sg[i] = (float)s;
        last = s;
    }
    sg[N] = strcmp(c->final_sigmas_type, "sigma_min") == 0 ? (float)last : 0.0f;
}

/* DPMSolverMultistep, use_flow_sigmas: alphas = linspace(1, 1/T, N+1), sigma = 1 - alpha shifted,
 * reversed, the final (zero) entry dropped: s_i = shift(1 - alphas[N - i]). */
static void grid_dpm(const wan_scheduler_config *c, int N, double S, float *ts, float *sg)
{
    double T = (double)c->num_train_timesteps;
    for (int i = 0; i < N; i++) {
        double s = shift_d(1.0 - np_linspace(1.0, 1.0 / T, N + 1, N - i), S);
        ts[i] = (float)(int64_t)(s * T);
        sg[i] = (float)s;
    }
    sg[N] = 0.0f;
}

/* FlowMatchEulerDiscrete: the constructor shifts the float32 training sigmas k/T (k = T..1), so
 * sigma_max = 1 and sigma_min = shift(1/T); set_timesteps spaces N points between sigma_max·T and
 * sigma_min·T in float64, divides by T and shifts again (sigma_min is shifted twice), then stores
 * float32 sigmas and float32 timesteps = sigma·T. */
static void grid_euler(const wan_scheduler_config *c, int N, double S, float *ts, float *sg)
{
    int T = c->num_train_timesteps;
    double smax = (double)shift_f((float)T / (float)T, S);
    double smin = (double)shift_f((float)1 / (float)T, S);
    for (int i = 0; i < N; i++) {
        double t = np_linspace(smax * T, smin * T, N, i);
        sg[i] = (float)shift_d(t / (double)T, S);
        ts[i] = sg[i] * (float)T;
    }
    sg[N] = 0.0f;
}

static wan_status check_config(const wan_scheduler_config *c, int N, double S, wan_error *err)
{
    if (N < 1 || N > WAN_SCHED_MAX_STEPS)
        return wan_err(err, WAN_ERR_INVALID_ARG, "scheduler: num_inference_steps %d is outside 1..%d",
                       N, WAN_SCHED_MAX_STEPS);
    if (!(S > 0) || !isfinite(S))
        return wan_err(err, WAN_ERR_INVALID_ARG, "scheduler: flow shift %g must be a positive number", S);
    if (c->num_train_timesteps < 1)
        return wan_err(err, WAN_ERR_INVALID_ARG, "scheduler: num_train_timesteps %d must be positive",
                       c->num_train_timesteps);
    if (c->kind == WAN_SCHEDULER_EULER)
        return WAN_OK; /* FlowMatchEuler has no further options that wan.c reads */
    if (c->kind != WAN_SCHEDULER_UNIPC && c->kind != WAN_SCHEDULER_DPMPP)
        return wan_err(err, WAN_ERR_INVALID_ARG, "scheduler: unknown kind %d", (int)c->kind);
    const char *name = c->kind == WAN_SCHEDULER_UNIPC ? "UniPCMultistepScheduler"
                                                      : "DPMSolverMultistepScheduler";
    if (!c->use_flow_sigmas || strcmp(c->prediction_type, "flow_prediction") != 0)
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "%s: only the flow-matching setup (use_flow_sigmas true, prediction_type "
                       "flow_prediction) is supported, got use_flow_sigmas %d, prediction_type '%s'",
                       name, c->use_flow_sigmas, c->prediction_type);
    if (c->solver_order < 1 || c->solver_order > 2)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: solver_order %d is not supported (1 or 2)", name,
                       c->solver_order);
    if (c->kind == WAN_SCHEDULER_UNIPC) {
        if (!c->predict_x0)
            return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: predict_x0 false is not supported", name);
        if (strcmp(c->solver_type, "bh1") != 0 && strcmp(c->solver_type, "bh2") != 0)
            return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: solver_type '%s' is not supported (bh1, bh2)",
                           name, c->solver_type);
        if (strcmp(c->final_sigmas_type, "zero") != 0 && strcmp(c->final_sigmas_type, "sigma_min") != 0)
            return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: final_sigmas_type '%s' is not supported",
                           name, c->final_sigmas_type);
    } else {
        /* diffusers maps the UniPC names to midpoint; heun is a different update */
        if (strcmp(c->solver_type, "heun") == 0)
            return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: solver_type heun is not supported (midpoint)",
                           name);
        if (strcmp(c->final_sigmas_type, "zero") != 0)
            return wan_err(err, WAN_ERR_UNSUPPORTED,
                           "%s: final_sigmas_type '%s' is not supported with flow sigmas (zero)", name,
                           c->final_sigmas_type);
    }
    return WAN_OK;
}

wan_status wan_scheduler_grid(const wan_scheduler_config *cfg, int n_steps, double shift,
                              float *timesteps, float *sigmas, wan_error *err)
{
    wan_status rc = check_config(cfg, n_steps, shift, err);
    if (rc != WAN_OK)
        return rc;
    if (cfg->kind == WAN_SCHEDULER_UNIPC)
        grid_unipc(cfg, n_steps, shift, timesteps, sigmas);
    else if (cfg->kind == WAN_SCHEDULER_DPMPP)
        grid_dpm(cfg, n_steps, shift, timesteps, sigmas);
    else
        grid_euler(cfg, n_steps, shift, timesteps, sigmas);
    return WAN_OK;
}

/* ---- lifetime --------------------------------------------------------------------------------- */

wan_scheduler_params wan_scheduler_default_params(void)
{
    return (wan_scheduler_params){ .shift = 0.0, .disable_corrector = NULL, .n_disable_corrector = 0 };
}

static void free_state(wan_scheduler_t *s)
{
    if (s->hist_be) {
        s->hist_be->free(s->hist_be, s->m1);
        s->hist_be->free(s->hist_be, s->m2);
        s->hist_be->free(s->hist_be, s->x_last);
    }
    s->m1 = s->m2 = s->x_last = NULL;
    s->hist_be = NULL;
    s->n = 0;
}

void wan_scheduler_free(wan_scheduler_t *s)
{
    if (!s)
        return;
    free_state(s);
    wan_backend_free(s->cpu);
    wan_free(s->timesteps);
    wan_free(s->sigmas);
    wan_free(s->no_corrector);
    wan_free(s);
}

void wan_scheduler_reset(wan_scheduler_t *s)
{
    if (!s)
        return;
    s->step_index = 0;
    s->lower_order_nums = 0;
    s->last_order = 0;
    s->have_last = 0;
}

wan_status wan_scheduler_create(const wan_scheduler_config *cfg, int num_inference_steps,
                                const wan_scheduler_params *params, wan_scheduler_t **out,
                                char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc = WAN_OK;
    wan_scheduler_params p = params ? *params : wan_scheduler_default_params();
    if (out)
        *out = NULL;
    if (!cfg || !out) {
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_scheduler_create: cfg and out must not be NULL");
        goto fail;
    }
    double S = p.shift > 0 ? p.shift : cfg->flow_shift;
    rc = check_config(cfg, num_inference_steps, S, &err);
    if (rc != WAN_OK)
        goto fail;
    if (p.n_disable_corrector < 0 || (p.n_disable_corrector > 0 && !p.disable_corrector)) {
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "scheduler: disable_corrector list is invalid");
        goto fail;
    }
    int N = num_inference_steps;
    wan_scheduler_t *s = wan_calloc(1, sizeof *s);
    if (!s) {
        rc = wan_err(&err, WAN_ERR_NOMEM, "scheduler: out of memory");
        goto fail;
    }
    s->kind = cfg->kind;
    s->n_steps = N;
    s->shift = S;
    s->order = cfg->kind == WAN_SCHEDULER_EULER ? 1 : cfg->solver_order;
    s->lower_order_final = cfg->lower_order_final;
    s->bh1 = strcmp(cfg->solver_type, "bh1") == 0;
    s->timesteps = wan_malloc((size_t)N * sizeof(float));
    s->sigmas = wan_malloc((size_t)(N + 1) * sizeof(float));
    s->no_corrector = wan_calloc((size_t)N, 1);
    if (!s->timesteps || !s->sigmas || !s->no_corrector) {
        wan_scheduler_free(s);
        rc = wan_err(&err, WAN_ERR_NOMEM, "scheduler: out of memory for %d steps", N);
        goto fail;
    }
    for (int i = 0; i < p.n_disable_corrector; i++)
        if (p.disable_corrector[i] >= 0 && p.disable_corrector[i] < N)
            s->no_corrector[p.disable_corrector[i]] = 1;
    rc = wan_scheduler_grid(cfg, N, S, s->timesteps, s->sigmas, &err);
    if (rc != WAN_OK) {
        wan_scheduler_free(s);
        goto fail;
    }
    wan_scheduler_reset(s);
    *out = s;
    return WAN_OK;
fail:
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

int wan_scheduler_num_steps(const wan_scheduler_t *s) { return s ? s->n_steps : 0; }
const float *wan_scheduler_timesteps(const wan_scheduler_t *s) { return s ? s->timesteps : NULL; }
const float *wan_scheduler_sigmas(const wan_scheduler_t *s) { return s ? s->sigmas : NULL; }
int wan_scheduler_step_index(const wan_scheduler_t *s) { return s ? s->step_index : 0; }
double wan_scheduler_shift(const wan_scheduler_t *s) { return s ? s->shift : 0.0; }

/* ---- per-step scalars (float32, as the 0-dim tensors of the reference) ----------------------- */

static float logf_cr(float x) { return (float)log((double)x); }
static float expf_cr(float x) { return (float)exp((double)x); }

/* lambda = log(alpha) - log(sigma), alpha = 1 - sigma; +inf at sigma = 0. */
static float lambda_of(float sigma) { return logf_cr(1.0f - sigma) - logf_cr(sigma); }

/* UniPC coefficients for one predictor or corrector update from sigma_s0 to sigma_t. */
typedef struct unipc_coef {
    float cx;   /* sigma_t / sigma_s0                        */
    float cm;   /* alpha_t * h_phi_1                         */
    float cb;   /* alpha_t * B(h)                            */
    float rk;   /* (lambda_s1 - lambda_s0) / h, order 2      */
    float rho0, rho1; /* corrector weights (order 2); rho1 = 0.5 for order 1 */
} unipc_coef;

/* torch.linalg.solve([[1, 1], [r, 1]], [b0, b1]) in float32 as torch's LAPACK (MKL sgesv) does it:
 * LU with partial pivoting, then the triangular solves, dividing by a diagonal element as a
 * multiplication by its reciprocal (checked bit-exact on 20k random systems). */
static void solve2(float r, float b0, float b1, float *x0, float *x1)
{
    float a00 = 1.0f, a01 = 1.0f, a10 = r, a11 = 1.0f;
    if (fabsf(a10) > fabsf(a00)) {
        float t;
        t = a00, a00 = a10, a10 = t;
        t = a01, a01 = a11, a11 = t;
        t = b0, b0 = b1, b1 = t;
    }
    float l = a10 * (1.0f / a00);
    float u11 = a11 - l * a01;
    float y1 = b1 - l * b0;
    *x1 = y1 * (1.0f / u11);
    *x0 = (b0 - a01 * *x1) * (1.0f / a00);
}

/* sigma_s1 is only read for order 2. corrector = 1 also solves for the UniC weights. */
static unipc_coef unipc_coefs(float sigma_t, float sigma_s0, float sigma_s1, int order, int bh1,
                              int corrector)
{
    unipc_coef k = { 0 };
    float alpha_t = 1.0f - sigma_t;
    float lambda_s0 = lambda_of(sigma_s0);
    float h = lambda_of(sigma_t) - lambda_s0;
    float hh = -h;
    float h_phi_1 = wan_torch_expm1f(hh);
    float B = bh1 ? hh : wan_torch_expm1f(hh);
    k.cx = sigma_t / sigma_s0;
    k.cm = alpha_t * h_phi_1;
    k.cb = alpha_t * B;
    k.rho1 = 0.5f;
    if (order == 2)
        k.rk = (lambda_of(sigma_s1) - lambda_s0) / h;
    if (corrector && order == 2) {
        float h_phi_k = h_phi_1 / hh - 1.0f;
        float b0 = h_phi_k * 1.0f / B;
        h_phi_k = h_phi_k / hh - 0.5f;
        float b1 = h_phi_k * 2.0f / B;
        solve2(k.rk, b0, b1, &k.rho0, &k.rho1);
    }
    return k;
}

/* ---- step ------------------------------------------------------------------------------------- */

/* Makes the history buffers (n floats each, in be's memory) ready for the next step. */
static wan_status ensure_state(wan_scheduler_t *s, wan_backend *be, size_t n, wan_error *err)
{
    if (s->step_index > 0 && s->n == n && s->hist_be == be)
        return WAN_OK;
    if (s->step_index > 0 && s->n != n)
        return wan_err(err, WAN_ERR_INVALID_ARG, "scheduler step %d: sample has %zu elements, earlier steps had %zu",
                       s->step_index, n, s->n);
    if (s->step_index > 0)
        return wan_err(err, WAN_ERR_INVALID_ARG, "scheduler step %d: the earlier steps ran on another backend "
                       "(reset the scheduler to change it)", s->step_index);
    if (s->n == n && s->hist_be == be && (s->kind == WAN_SCHEDULER_EULER || s->m1))
        return WAN_OK;
    free_state(s);
    s->hist_be = be;
    if (s->kind == WAN_SCHEDULER_EULER) {
        s->n = n;
        return WAN_OK;
    }
    s->m1 = be->alloc(be, n * sizeof(float));
    s->m2 = be->alloc(be, n * sizeof(float));
    s->x_last = s->kind == WAN_SCHEDULER_UNIPC ? be->alloc(be, n * sizeof(float)) : NULL;
    if (!s->m1 || !s->m2 || (s->kind == WAN_SCHEDULER_UNIPC && !s->x_last)) {
        free_state(s);
        wan_error e = { 0 };
        be->sync(be, &e);
        return wan_err(err, WAN_ERR_NOMEM, "scheduler: out of memory for %zu-element history (%s)", n, e.msg);
    }
    s->n = n;
    return WAN_OK;
}

/* The coefficients of one UniPC step (bh1/bh2, predict_x0, flow sigmas). */
static wan_sampler_update coef_unipc(const wan_scheduler_t *s)
{
    const int i = s->step_index, N = s->n_steps;
    const float *sg = s->sigmas;
    wan_sampler_update u = { .kind = WAN_UPDATE_UNIPC, .sigma = sg[i] };
    u.corr = i > 0 && !s->no_corrector[i - 1] && s->have_last;
    if (u.corr) { /* UniC: redo the step i-1 -> i from x_last with the new evaluation */
        unipc_coef kc = unipc_coefs(sg[i], sg[i - 1], s->last_order == 2 ? sg[i - 2] : 0.0f, s->last_order,
                                    s->bh1, 1);
        u.ccx = kc.cx, u.ccm = kc.cm, u.ccb = kc.cb, u.crk = kc.rk, u.rho0 = kc.rho0, u.rho1 = kc.rho1;
    }
    int order = s->lower_order_final && N - i < s->order ? N - i : s->order;
    if (order > s->lower_order_nums + 1)
        order = s->lower_order_nums + 1;
    /* Last step to sigma = 0: lambda = +inf and the update is exactly the x0 prediction; taken
     * literally an order-2 update there would divide by r = -0 (NaN), so it is forced to order 1. */
    u.to_zero = sg[i + 1] == 0.0f;
    if (u.to_zero)
        order = 1;
    if (!u.to_zero) {
        unipc_coef kp = unipc_coefs(sg[i + 1], u.sigma, order == 2 ? sg[i - 1] : 0.0f, order, s->bh1, 0);
        u.cx = kp.cx, u.cm = kp.cm, u.cb = kp.cb, u.rk = kp.rk;
    }
    u.order = order;
    u.last_order = s->last_order;
    return u;
}

/* The coefficients of one DPM-Solver++ step (midpoint, order <= 2, flow sigmas, final sigma zero). */
static wan_sampler_update coef_dpm(const wan_scheduler_t *s)
{
    const int i = s->step_index, N = s->n_steps;
    const float *sg = s->sigmas;
    wan_sampler_update u = { .kind = WAN_UPDATE_DPM, .sigma = sg[i] };
    /* diffusers: order 1 on the first step, on the last step (final sigma zero) and for
     * solver_order 1; order 2 otherwise */
    u.order = s->order;
    if (s->lower_order_nums < 1 || i == N - 1)
        u.order = 1;
    u.to_zero = sg[i + 1] == 0.0f;
    if (u.to_zero)
        u.order = 1;
    if (!u.to_zero) {
        float alpha_t = 1.0f - sg[i + 1];
        float lambda_s0 = lambda_of(u.sigma);
        float h = lambda_of(sg[i + 1]) - lambda_s0;
        u.cx = sg[i + 1] / u.sigma;
        u.cm = alpha_t * (expf_cr(-h) - 1.0f);
        if (u.order == 2) {
            float r0 = (lambda_s0 - lambda_of(sg[i - 1])) / h;
            u.inv_r0 = 1.0f / r0;
            u.cd = 0.5f * u.cm;
        }
    }
    return u;
}

static wan_sampler_update coef_euler(const wan_scheduler_t *s)
{
    return (wan_sampler_update){ .kind = WAN_UPDATE_EULER,
                                 .dt = s->sigmas[s->step_index + 1] - s->sigmas[s->step_index] };
}

wan_status wan_scheduler_step_be(wan_scheduler_t *s, wan_backend *be, const float *model_output,
                                 const float *sample, float *prev_sample, size_t n, wan_error *err)
{
    if (!s || !be || (n > 0 && (!model_output || !sample || !prev_sample)))
        return wan_err(err, WAN_ERR_INVALID_ARG, "wan_scheduler_step: NULL argument");
    if (s->step_index >= s->n_steps)
        return wan_err(err, WAN_ERR_INVALID_ARG,
                       "wan_scheduler_step: all %d steps are done (wan_scheduler_reset starts over)", s->n_steps);
    wan_status rc = ensure_state(s, be, n, err);
    if (rc != WAN_OK)
        return rc;
    const wan_sampler_update u = s->kind == WAN_SCHEDULER_UNIPC ? coef_unipc(s)
                                 : s->kind == WAN_SCHEDULER_DPMPP ? coef_dpm(s)
                                                                  : coef_euler(s);
    be->sampler_update(be, &u, model_output, sample, prev_sample, s->m1, s->m2, s->x_last, (int64_t)n);
    if ((rc = be->sync(be, err)) != WAN_OK)
        return wan_err_wrap(err, "scheduler step %d: ", s->step_index);
    if (s->kind == WAN_SCHEDULER_UNIPC) { /* the next corrector redoes this predictor */
        s->last_order = u.order;
        s->have_last = 1;
    }
    if (s->lower_order_nums < s->order)
        s->lower_order_nums++;
    s->step_index++;
    return WAN_OK;
}

wan_status wan_scheduler_step(wan_scheduler_t *s, const float *model_output, const float *sample,
                              float *prev_sample, size_t n, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc = WAN_OK;
    if (s && !s->cpu)
        rc = wan_backend_cpu_create(0, &s->cpu, &err);
    if (rc == WAN_OK)
        rc = wan_scheduler_step_be(s, s ? s->cpu : NULL, model_output, sample, prev_sample, n, &err);
    if (rc != WAN_OK)
        wan_err_copy(&err, errbuf, errlen);
    return rc;
}
