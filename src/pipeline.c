/* pipeline.c — the WanPipeline: text encoding, the two-expert denoising loop with CFG, decoding. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"
#include "model_dir.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

struct wan_ctx {
    const wan_model_t *model;
    volatile sig_atomic_t cancel;
    wan_error err;
};

wan_generate_params wan_generate_default_params(const wan_model_t *m)
{
    wan_generate_params p;
    memset(&p, 0, sizeof p);
    p.guidance_scale = -1.0;
    p.guidance_scale_2 = -1.0;
    p.sampler = -1;
    (void)m;
    return p;
}

wan_status wan_ctx_new(const wan_model_t *model, wan_ctx_t **out, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    *out = NULL;
    if (!model) {
        wan_err(&err, WAN_ERR_INVALID_ARG, "wan_ctx_new: model is NULL");
        wan_err_copy(&err, errbuf, errlen);
        return err.code;
    }
    wan_ctx_t *c = wan_calloc(1, sizeof *c);
    if (!c) {
        wan_err(&err, WAN_ERR_NOMEM, "wan_ctx_new: out of memory");
        wan_err_copy(&err, errbuf, errlen);
        return err.code;
    }
    c->model = model;
    *out = c;
    return WAN_OK;
}

void wan_ctx_free(wan_ctx_t *ctx) { wan_free(ctx); }
const char *wan_ctx_errmsg(const wan_ctx_t *ctx) { return ctx ? ctx->err.msg : ""; }
void wan_ctx_cancel(wan_ctx_t *ctx) { ctx->cancel = 1; }

void wan_video_free(wan_video *v)
{
    if (!v)
        return;
    wan_free(v->frames);
    wan_free(v->latents);
    memset(v, 0, sizeof *v);
}

wan_status wan_generate(wan_ctx_t *ctx, const wan_generate_params *p, wan_video *out)
{
    (void)p;
    memset(out, 0, sizeof *out);
    return wan_err(&ctx->err, WAN_ERR_UNSUPPORTED, "wan_generate: the pipeline is not wired yet");
}
