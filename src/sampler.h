/* sampler.h — the flow-matching schedulers of diffusers' WanPipeline: UniPCMultistepScheduler (flow
 * sigmas, bh1/bh2, predict_x0), FlowMatchEulerDiscreteScheduler and DPMSolverMultistepScheduler
 * (dpmsolver++, midpoint, flow sigmas). The public API (wan_scheduler_*) is in wan.h; this header
 * exposes the state for the pipeline and the grid builder for tests. */
#ifndef WAN_SAMPLER_H
#define WAN_SAMPLER_H

#include "core.h"

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
};

/* Builds the reference's timestep and sigma grid for `kind` (arrays of N and N+1 floats) without
 * creating a scheduler. Returns WAN_ERR_UNSUPPORTED / WAN_ERR_INVALID_ARG for configs outside the
 * flow-matching family. */
wan_status wan_scheduler_grid(const wan_scheduler_config *cfg, int n_steps, double shift,
                              float *timesteps, float *sigmas, wan_error *err);

#endif /* WAN_SAMPLER_H */
