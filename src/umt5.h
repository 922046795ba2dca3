/* umt5.h — the umT5 text encoder (UMT5EncoderModel) on the CPU (internal). See docs/MODEL.md "umT5". */
#ifndef WAN_UMT5_H
#define WAN_UMT5_H

#include "core.h"
#include "safetensors.h"

/* Bucket of the relative position d = key - query for the bidirectional (encoder) bias, with the
 * reference's float32 arithmetic: |d| < nb/4 exact, then logarithmic up to max_distance, in [0, nb). */
int wan_umt5_bucket(int64_t d, int num_buckets, int max_distance);

/* Original Wan T5 tensor name (models_t5_umt5-xxl-enc-bf16: token_embedding.weight, blocks.N.attn.q.weight,
 * blocks.N.ffn.gate.0.weight, norm.weight, ...) -> transformers name (shared.weight,
 * encoder.block.N.layer.0.SelfAttention.q.weight, ...). Returns 0 when the name is not an original one.
 * A wan_st_rename_fn. */
int wan_umt5_rename_original(const char *name, char *buf, size_t len, void *user);

/* The inverse: transformers name -> original Wan T5 name (for `wan convert --layout original`); returns 0 for
 * a name with no original counterpart (encoder.embed_tokens.weight, the tied alias of shared.weight). */
int wan_umt5_rename_to_original(const char *name, char *buf, size_t len, void *user);

/* Checks that every tensor of a UMT5EncoderModel with config c is present with its shape and a float
 * dtype (F32/F16/BF16); the error names the tensor and its file. */
wan_status wan_umt5_check_weights(const wan_st_set *w, const wan_text_encoder_config *c, wan_error *err);

/* Runs the encoder on ids[0..S) (each in [0, vocab_size)) and writes the last hidden state
 * out[S, d_model] (after the final norm). mask (may be NULL: every key is attended) gives the keys
 * each query may attend to, exactly as transformers' attention_mask (mask[j] == 0: key j ignored).
 * layers (may be NULL) receives the output of every block, [num_layers, S, d_model], before the final norm.
 * Weights are used as stored (F32/F16/BF16); each matrix is converted to f32 into one scratch buffer
 * before its GEMM. Every buffer is freed before returning. n_threads <= 0: OpenMP default.
 * Errors: a missing or misshapen tensor (named), an id out of range, out of memory. */
wan_status wan_umt5_forward(const wan_st_set *w, const wan_text_encoder_config *c, const int64_t *ids,
                            const int64_t *mask, int S, float *out, float *layers, int n_threads,
                            wan_error *err);

/* WanPipeline's prompt embedding for one sequence of L real tokens (the tokenizer's ids up to and
 * including </s>, no padding): runs the encoder on those L tokens only and writes out[max_len, d_model]
 * with rows >= L set to exactly 0. 1 <= L <= max_len. */
wan_status wan_umt5_encode(const wan_st_set *w, const wan_text_encoder_config *c, const int64_t *ids, int L,
                           int max_len, float *out, int n_threads, wan_error *err);

#endif /* WAN_UMT5_H */
