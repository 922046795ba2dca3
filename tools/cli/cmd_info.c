/* cmd_info.c — `wan info PATH`: layout, components, configs, parameters, memory estimate. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void print_dtypes(const wan_component_info *ci)
{
    char b[32];
    int first = 1;
    for (int d = 0; d < WAN_DTYPE_COUNT; d++) {
        if (!ci->bytes_by_dtype[d])
            continue;
        printf("%s%s %s", first ? "" : ", ", wan_dtype_name((wan_dtype)d),
               cli_bytes(ci->bytes_by_dtype[d], b, sizeof b));
        first = 0;
    }
}

static void print_transformer(const wan_transformer_config *c)
{
    printf("    dim %d (%d heads x %d), layers %d, ffn %d, in/out channels %d/%d, text_dim %d, "
           "freq_dim %d, patch [%d,%d,%d], eps %g\n",
           c->num_attention_heads * c->attention_head_dim, c->num_attention_heads,
           c->attention_head_dim, c->num_layers, c->ffn_dim, c->in_channels, c->out_channels,
           c->text_dim, c->freq_dim, c->patch_size[0], c->patch_size[1], c->patch_size[2], c->eps);
}

static void print_component(const wan_model_t *m, wan_component c)
{
    wan_component_info ci;
    if (wan_model_component_info(m, c, &ci) != WAN_OK || !ci.present)
        return;
    char b[32];
    printf("  %-13s %s  (%s)\n", wan_component_name(c), ci.class_name, ci.path);
    if (ci.n_tensors) {
        printf("    %lld tensors, %.3f M parameters, %s in %d file%s: ", (long long)ci.n_tensors,
               (double)ci.n_params / 1e6, cli_bytes(ci.n_bytes, b, sizeof b), ci.n_files,
               ci.n_files == 1 ? "" : "s");
        print_dtypes(&ci);
        printf("%s\n", ci.original_names ? " (original Wan names)" : "");
    }
    switch (c) {
    case WAN_COMPONENT_TRANSFORMER:
    case WAN_COMPONENT_TRANSFORMER_2:
        print_transformer(wan_model_transformer_config(m, c == WAN_COMPONENT_TRANSFORMER_2));
        break;
    case WAN_COMPONENT_VAE: {
        const wan_vae_config *v = wan_model_vae_config(m);
        printf("    z_dim %d, base_dim %d, decoder_base_dim %d, dim_mult [", v->z_dim, v->base_dim,
               v->decoder_base_dim);
        for (int i = 0; i < v->n_dim_mult; i++)
            printf(i ? ",%d" : "%d", v->dim_mult[i]);
        printf("], res blocks %d, residual %s, patch %d, stride %dx%dx%d (t x h x w)\n",
               v->num_res_blocks, v->is_residual ? "yes" : "no", v->patch_size,
               v->scale_factor_temporal, v->scale_factor_spatial, v->scale_factor_spatial);
        break;
    }
    case WAN_COMPONENT_TEXT_ENCODER: {
        const wan_text_encoder_config *t = wan_model_text_encoder_config(m);
        printf("    umT5: d_model %d, %d layers, %d heads x %d, d_ff %d, vocab %d, %d buckets (max "
               "distance %d)\n",
               t->d_model, t->num_layers, t->num_heads, t->d_kv, t->d_ff, t->vocab_size,
               t->relative_attention_num_buckets, t->relative_attention_max_distance);
        break;
    }
    case WAN_COMPONENT_SCHEDULER: {
        const wan_scheduler_config *s = wan_model_scheduler_config(m);
        printf("    %d train timesteps, shift %g, order %d, prediction %s, flow sigmas %s\n",
               s->num_train_timesteps, s->flow_shift, s->solver_order, s->prediction_type,
               s->use_flow_sigmas ? "yes" : "no");
        break;
    }
    default:
        break;
    }
}

int cmd_info(int argc, char **argv)
{
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc == 2 ? stdout : stderr,
                "usage: wan info PATH\n\n"
                "PATH: a diffusers pipeline folder (model_index.json), a component folder (config.json),\n"
                "an original Wan release folder (high_noise_model/, low_noise_model/) or a .safetensors file.\n");
        return argc == 2 ? 0 : 2;
    }
    char err[1024];
    wan_model_t *m = NULL;
    wan_status rc = wan_model_load(argv[1], NULL, &m, err, sizeof err);
    if (rc != WAN_OK) {
        fprintf(stderr, "wan info: %s\n", err);
        return cli_exit_code(rc);
    }
    printf("model:  %s\nlayout: %s\n", wan_model_path(m), wan_layout_name(wan_model_layout(m)));
    const wan_pipeline_config *p = wan_model_pipeline_config(m);
    int two = wan_model_transformer_config(m, 1) != NULL;
    if (two)
        printf("experts: 2 (transformer = high-noise expert while t >= %g, transformer_2 = low-noise "
               "expert below); boundary_ratio %g\n",
               p->boundary_ratio * 1000.0, p->boundary_ratio);
    else
        printf("experts: 1\n");
    if (p->expand_timesteps)
        printf("expand_timesteps: yes (per-token timesteps)\n");
    printf("components:\n");
    for (int c = 0; c < WAN_COMPONENT_COUNT; c++)
        print_component(m, (wan_component)c);
    const wan_vae_config *v = wan_model_vae_config(m);
    int w = 1280, h = 720, f = 81;
    if (v && v->z_dim == 48)
        h = 704; /* TI2V-5B's default size */
    int64_t need = wan_model_estimate_memory(m, w, h, f);
    char b[32];
    if (need)
        printf("memory: about %s peak for %dx%d, %d frames (one expert resident, weights as stored)\n",
               cli_bytes(need, b, sizeof b), w, h, f);
    wan_cpu_info ci = wan_cpu_get_info();
    printf("cpu: kernels %s, %d threads; bf16 products (WAN_CPU_GEMM=bf16): %s\n", wan_cpu_kernel_name(), ci.n_threads,
           ci.amx_bf16 ? "AMX" : ci.avx512_bf16 ? "AVX512-BF16" : "not available");
    wan_model_free(m);
    return 0;
}
