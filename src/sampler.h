/* sampler.h — the flow-matching schedulers of diffusers' WanPipeline: UniPCMultistepScheduler (flow
 * sigmas, bh1/bh2, predict_x0), FlowMatchEulerDiscreteScheduler and DPMSolverMultistepScheduler
 * (dpmsolver++, midpoint, flow sigmas). The public API (wan_scheduler_*) is in wan.h; this header
 * exposes the state for the pipeline and the grid builder for tests. */
#ifndef WAN_SAMPLER_H
#define WAN_SAMPLER_H

#include "core.h"

struct wan_backend;

#define WAN_SCHED_MAX_STEPS 10000

struct wan_scheduler {
    wan_scheduler_kind kind;
    int n_steps;            /* N                                                               */
    double shift;           /* effective flow shift                                            */
    int order;              /* solver_order (1 or 2)                                           */
    int lower_order_final;
    int bh1;                /* UniPC solver_type bh1 (B(h) = h) instead of bh2 (B(h) = e^h - 1) */
    float *timesteps;       /* [N]: int64 values for UniPC/DPM++, float32 values for Euler     */
    float *sigmas;          /* [N+1], float32 as the reference holds them; sigmas[N] is final  */
    unsigned char *no_corrector; /* [N]: 1 where UniPC's disable_corrector lists the index    */

    /* per-run state, reset by wan_scheduler_reset */
    int step_index;
    int lower_order_nums;   /* completed steps, capped at `order`                              */
    int last_order;         /* order of the last UniPC predictor (the corrector uses it)       */
    size_t n;               /* elements per sample, fixed by the first step                    */
    float *m1, *m2;         /* x0 predictions of the last and second-to-last step [n]         */
    float *x_last;          /* UniPC: the sample the last predictor started from [n]           */
    int have_last;
    struct wan_backend *hist_be; /* the backend whose memory holds m1, m2, x_last (NULL: none yet) */
    struct wan_backend *cpu;     /* owned: the "cpu" table of wan_scheduler_step (made on first use) */
};

/* Builds the reference's timestep and sigma grid for `kind` (arrays of N and N+1 floats) without
 * creating a scheduler. Returns WAN_ERR_UNSUPPORTED / WAN_ERR_INVALID_ARG for configs outside the
 * flow-matching family. */
wan_status wan_scheduler_grid(const wan_scheduler_config *cfg, int n_steps, double shift,
                              float *timesteps, float *sigmas, wan_error *err);

/* wan_scheduler_step on backend memory: model_output, sample and prev_sample are n floats of be's memory
 * (prev_sample may alias either). The scheduler computes the step's coefficients on the host and be runs the
 * element update (be->sampler_update), bit for bit the same on every backend. The history lives in be's
 * memory, allocated on the first step; a run (from step 0) on another backend moves it there. The scheduler
 * must be freed, or reset and stepped on another backend, before be is freed. Errors: those of
 * wan_scheduler_step and the backend's (allocation, launch). */
wan_status wan_scheduler_step_be(wan_scheduler_t *s, struct wan_backend *be, const float *model_output,
                                 const float *sample, float *prev_sample, size_t n, wan_error *err);

#endif /* WAN_SAMPLER_H */
