/* http_parse.h — the request parsing of `wan serve`, as plain functions on bytes (no socket, no
 * global state) so that tests and the fuzzer (fuzz/fuzz_http.c) can call them directly: path routing,
 * the JSON / multipart / urlencoded body of POST /v1/videos, the Range header, bearer-token checks and
 * job ids. Every function here is thread-safe and never reads past the lengths it is given. */
#ifndef WAN_SERVER_HTTP_PARSE_H
#define WAN_SERVER_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Job ids: "video_" + 32 lowercase hex digits (128 random bits). */
#define SRV_ID_PREFIX "video_"
#define SRV_ID_LEN 38

/* ---- routing ---------------------------------------------------------------------------------- */
typedef enum srv_route_kind {
    SRV_ROUTE_NONE = 0,  /* no such path                                 */
    SRV_ROUTE_PAGE,      /* GET /                                        */
    SRV_ROUTE_HEALTH,    /* GET /health                                  */
    SRV_ROUTE_METRICS,   /* GET /metrics                                 */
    SRV_ROUTE_CREATE,    /* POST /v1/videos                              */
    SRV_ROUTE_LIST,      /* GET /v1/videos                               */
    SRV_ROUTE_RETRIEVE,  /* GET /v1/videos/{id}                          */
    SRV_ROUTE_DELETE,    /* DELETE /v1/videos/{id}                       */
    SRV_ROUTE_CANCEL,    /* POST /v1/videos/{id}/cancel (extension)      */
    SRV_ROUTE_CONTENT,   /* GET|HEAD /v1/videos/{id}/content             */
    SRV_ROUTE_EVENTS,    /* GET /v1/videos/{id}/events (SSE, extension)  */
    SRV_ROUTE_LORAS      /* GET /v1/loras (extension)                    */
} srv_route_kind;

typedef struct srv_route {
    srv_route_kind kind;
    char id[SRV_ID_LEN + 1]; /* the validated job id for routes that take one, else "" */
} srv_route;

/* Routes `method` + `path` (the path without its query string). Returns 200 and fills *out for a known
 * route, 404 for an unknown path or a malformed id, 405 for a known path with another method (HEAD is
 * accepted wherever GET is). */
int srv_route_parse(const char *method, const char *path, srv_route *out);

/* 1 when s is a well-formed job id, else 0. */
int srv_id_valid(const char *s);

/* ---- job parameters --------------------------------------------------------------------------- */

/* LoRA adapters of a request: file names inside the server's --lora-dir. */
#define SRV_MAX_LORAS 8
#define SRV_LORA_NAME_MAX 255

typedef enum srv_lora_target {
    SRV_LORA_HIGH = 1, /* the values of wan_lora_target */
    SRV_LORA_LOW = 2,
    SRV_LORA_BOTH = 3
} srv_lora_target;

typedef struct srv_lora {
    char name[SRV_LORA_NAME_MAX + 1]; /* a plain file name (srv_lora_name_valid)    */
    double scale;                     /* strength, [-100, 100]; 1 = as trained        */
    int target;                       /* a srv_lora_target                            */
} srv_lora;

typedef struct srv_params {
    char *prompt;           /* owned, never NULL after a successful parse        */
    char *negative_prompt;  /* owned; NULL: the model's default negative prompt  */
    char model[128];        /* as requested ("" when absent)                      */
    char seconds[16];       /* as requested ("" when absent)                      */
    int width, height;      /* 0: default                                         */
    int num_frames;         /* 0: from seconds, else default                      */
    int fps;                /* 0: the model's frame rate                          */
    int steps;              /* 0: default                                         */
    double guidance_scale;  /* < 0: default                                       */
    double guidance_scale_2;/* < 0: default                                       */
    int sampler;            /* -1: the scheduler config's; 0 unipc, 1 euler, 2 dpmpp */
    int has_seed;
    uint64_t seed;
    int n_loras;
    srv_lora loras[SRV_MAX_LORAS];
} srv_params;

/* Bounds on a request. A field of 0 means "no bound" (used when reloading accepted jobs). */
typedef struct srv_limits {
    size_t max_prompt;      /* bytes of prompt and of negative prompt */
    int max_frames;
    int64_t max_pixels;     /* width * height                          */
    int max_steps;
} srv_limits;

/* Model defaults used to resolve a request (from wan_generate_default_params and the model). */
typedef struct srv_defaults {
    int width, height, num_frames, fps, steps;
} srv_defaults;

/* A request error: the HTTP status (400, 413, 415 ...), the offending parameter ("" when none), and
 * a message for the OpenAI error object. */
typedef struct srv_perr {
    int status;
    char param[64];
    char code[48];
    char msg[320];
} srv_perr;

/* Parses the body of POST /v1/videos according to its Content-Type (application/json,
 * multipart/form-data; boundary=..., or application/x-www-form-urlencoded; NULL means JSON).
 * Known fields: prompt, model, seconds, size, negative_prompt, seed, steps, guidance_scale,
 * guidance_scale_2, num_frames, fps, sampler, loras; any other field is an error, as is input_reference.
 * `loras` is a JSON array of {"name": FILE, "scale": NUMBER, "target": "high"|"low"|"both"} (scale and
 * target optional: 1 and "high"); in a JSON body it may be the array itself or a string holding it, in a
 * multipart or urlencoded body it is a string holding it. Names are only checked for their form here
 * (srv_lora_name_valid); whether the server has such a file is the caller's business.
 * Checks each value against `lim` (NULL: no bounds). On success returns 0 and *out owns its strings
 * (free with srv_params_free); on failure returns -1, fills *e, and *out holds nothing to free. */
int srv_params_parse(const char *content_type, const uint8_t *body, size_t len, const srv_limits *lim,
                     srv_params *out, srv_perr *e);

/* Fills what the request left open from `d`, rounds the size to multiples of 16 and the frame count to
 * 4k+1 as the pipeline does (frames from `seconds` x fps when only seconds is given), then checks the
 * result against `lim` (NULL: none). Returns 0, or -1 with *e filled. */
int srv_params_resolve(srv_params *p, const srv_defaults *d, const srv_limits *lim, srv_perr *e);

/* Frees the strings of *p and clears it. NULL allowed. */
void srv_params_free(srv_params *p);

/* 1 when `name` may name a LoRA file inside the server's folder: 1..SRV_LORA_NAME_MAX bytes, no '/' or
 * '\\', no control characters, not starting with '.' (so neither "." nor ".." nor hidden files), ending in
 * ".safetensors". Else 0. */
int srv_lora_name_valid(const char *name);

/* Name of a LoRA target ("high", "low", "both"). */
const char *srv_lora_target_name(int target);

/* Name of a sampler index ("unipc", "euler", "dpmpp"), or "default" for -1. */
const char *srv_sampler_name(int sampler);

/* ---- multipart -------------------------------------------------------------------------------- */
typedef struct srv_form_field {
    char name[64];
    const uint8_t *value;   /* points into the parsed body */
    size_t len;
    int is_file;            /* the part had a filename     */
} srv_form_field;

#define SRV_FORM_MAX 32
typedef struct srv_form {
    srv_form_field f[SRV_FORM_MAX];
    int n;
} srv_form;

/* Extracts the boundary from a multipart/form-data Content-Type into buf (at most 70 characters by
 * RFC 2046). Returns 0, or -1 when absent or malformed. */
int srv_multipart_boundary(const char *content_type, char *buf, size_t buflen);

/* Splits a multipart/form-data body into fields (values point into `body`). Returns 0, or -1 with *e
 * filled (status 400) for a malformed body or more than SRV_FORM_MAX parts. */
int srv_multipart_parse(const char *boundary, const uint8_t *body, size_t len, srv_form *out,
                        srv_perr *e);

/* ---- headers and query ------------------------------------------------------------------------ */

/* Parses a Range header against a resource of `size` bytes. Returns 1 with [*first, *last] (inclusive)
 * for one satisfiable byte range, 0 when the header is absent, malformed or asks for several ranges
 * (serve the whole resource), and -1 when unsatisfiable (answer 416). */
int srv_range_parse(const char *header, int64_t size, int64_t *first, int64_t *last);

/* Checks an Authorization header against the API key: 1 when it is exactly "Bearer <key>" (scheme
 * case-insensitive), else 0. The comparison of the key takes the same time wherever it differs. */
int srv_bearer_ok(const char *header, const char *key);

/* Decodes a URL-encoded component (%XX, '+' as space) of `len` bytes into buf (NUL-terminated).
 * Returns the decoded length, or -1 when it does not fit or holds a bad escape or a NUL byte. */
int srv_url_decode(const char *s, size_t len, char *buf, size_t buflen);

#endif
