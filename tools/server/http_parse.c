/* http_parse.c — request parsing for `wan serve`: routes, job parameters from JSON / multipart /
 * urlencoded bodies, Range headers, bearer tokens. Pure functions on bytes; see http_parse.h. */
#define _GNU_SOURCE
#include "http_parse.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int perr(srv_perr *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int perr(srv_perr *e, int status, const char *param, const char *code, const char *fmt, ...)
{
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- routing ---------------------------------------------------------------------------------- */

int srv_id_valid(const char *s)
{
    size_t np = strlen(SRV_ID_PREFIX);
    if (strncmp(s, SRV_ID_PREFIX, np) != 0 || strlen(s) != SRV_ID_LEN)
        return 0;
    for (const char *c = s + np; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return 0;
    return 1;
}

static int is_get(const char *m) { return !strcmp(m, "GET") || !strcmp(m, "HEAD"); }

static int route_id(const char *method, const char *rest, srv_route *out)
{
    /* rest = "{id}" or "{id}/content" etc. */
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (idlen != SRV_ID_LEN)
        return 404;
    memcpy(out->id, rest, idlen);
    out->id[idlen] = 0;
    if (!srv_id_valid(out->id))
        return 404;
    const char *sub = slash ? slash + 1 : NULL;
    if (!sub || !*sub) {
        if (is_get(method))
            out->kind = SRV_ROUTE_RETRIEVE;
        else if (!strcmp(method, "DELETE"))
            out->kind = SRV_ROUTE_DELETE;
        else
            return 405;
        return 200;
    }
    if (!strcmp(sub, "content") || !strcmp(sub, "events")) {
        if (!is_get(method))
            return 405;
        out->kind = sub[0] == 'c' ? SRV_ROUTE_CONTENT : SRV_ROUTE_EVENTS;
        return 200;
    }
    if (!strcmp(sub, "cancel")) {
        if (strcmp(method, "POST") != 0)
            return 405;
        out->kind = SRV_ROUTE_CANCEL;
        return 200;
    }
    return 404;
}

int srv_route_parse(const char *method, const char *path, srv_route *out)
{
    memset(out, 0, sizeof *out);
    static const struct {
        const char *path;
        srv_route_kind get, post;
    } fixed[] = {
        { "/", SRV_ROUTE_PAGE, SRV_ROUTE_NONE },
        { "/index.html", SRV_ROUTE_PAGE, SRV_ROUTE_NONE },
        { "/health", SRV_ROUTE_HEALTH, SRV_ROUTE_NONE },
        { "/metrics", SRV_ROUTE_METRICS, SRV_ROUTE_NONE },
        { "/v1/videos", SRV_ROUTE_LIST, SRV_ROUTE_CREATE },
        { "/v1/videos/", SRV_ROUTE_LIST, SRV_ROUTE_CREATE },
        { "/v1/loras", SRV_ROUTE_LORAS, SRV_ROUTE_NONE },
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (strcmp(path, fixed[i].path) != 0)
            continue;
        if (is_get(method))
            out->kind = fixed[i].get;
        else if (!strcmp(method, "POST") && fixed[i].post != SRV_ROUTE_NONE)
            out->kind = fixed[i].post;
        else
            return 405;
        return 200;
    }
    static const char vp[] = "/v1/videos/";
    if (!strncmp(path, vp, sizeof vp - 1))
        return route_id(method, path + sizeof vp - 1, out);
    return 404;
}

/* ---- values ----------------------------------------------------------------------------------- */

static int parse_int(const char *s, long long lo, long long hi, long long *v)
{
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

static int parse_double(const char *s, double *v)
{
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || *end || !isfinite(x))
        return -1;
    *v = x;
    return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
    if (!*s || *s == '-' || *s == '+')
        return -1;
    for (const char *c = s; *c; c++)
        if (!isdigit((unsigned char)*c))
            return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *v = x;
    return 0;
}

static int parse_size(const char *s, int *w, int *h)
{
    const char *x = strchr(s, 'x');
    if (!x)
        x = strchr(s, 'X');
    if (!x || x == s || (size_t)(x - s) > 6)
        return -1;
    char a[8];
    memcpy(a, s, (size_t)(x - s));
    a[x - s] = 0;
    long long vw, vh;
    if (parse_int(a, 1, 100000, &vw) || parse_int(x + 1, 1, 100000, &vh))
        return -1;
    *w = (int)vw;
    *h = (int)vh;
    return 0;
}

static const char *k_samplers[] = { "unipc", "euler", "dpmpp" };

const char *srv_sampler_name(int sampler)
{
    return sampler >= 0 && sampler < 3 ? k_samplers[sampler] : "default";
}

/* ---- LoRA adapters ---------------------------------------------------------------------------- */

static const char *k_lora_targets[] = { "high", "low", "both" };

const char *srv_lora_target_name(int target)
{
    return target >= SRV_LORA_HIGH && target <= SRV_LORA_BOTH ? k_lora_targets[target - 1] : "high";
}

int srv_lora_name_valid(const char *name)
{
    static const char ext[] = ".safetensors";
    size_t n = strlen(name);
    if (n == 0 || n > SRV_LORA_NAME_MAX || n <= sizeof ext - 1 || name[0] == '.' ||
        strcmp(name + n - (sizeof ext - 1), ext) != 0)
        return 0;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '/' || *c == '\\')
            return 0;
    return 1;
}

/* One element of `loras`: {"name": ..., "scale": ..., "target": ...}. */
static int parse_lora(const cJSON *o, int i, srv_lora *l, srv_perr *e)
{
    if (!cJSON_IsObject(o))
        return perr(e, 400, "loras", "invalid_type",
                    "'loras[%d]' must be an object {\"name\": FILE, \"scale\": NUMBER, \"target\": "
                    "\"high\"|\"low\"|\"both\"}.", i);
    memset(l, 0, sizeof *l);
    l->scale = 1.0;
    l->target = SRV_LORA_HIGH;
    int have_name = 0;
    for (const cJSON *it = o->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        if (!strcmp(k, "name")) {
            const char *v = cJSON_IsString(it) ? it->valuestring : NULL;
            if (!v || !srv_lora_name_valid(v))
                return perr(e, 400, "loras", "invalid_lora_name",
                            "'loras[%d].name' must be the plain name of a .safetensors file in the server's LoRA "
                            "folder (no '/', not starting with '.'), got '%.64s'.", i, v ? v : "(not a string)");
            memcpy(l->name, v, strlen(v) + 1);
            have_name = 1;
        } else if (!strcmp(k, "scale")) {
            if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || fabs(it->valuedouble) > 100)
                return perr(e, 400, "loras", "invalid_value", "'loras[%d].scale' must be a number in [-100, 100].",
                            i);
            l->scale = it->valuedouble;
        } else if (!strcmp(k, "target")) {
            int t = 0;
            for (int j = 0; j < 3 && cJSON_IsString(it); j++)
                if (!strcasecmp(it->valuestring, k_lora_targets[j]))
                    t = j + 1;
            if (!t)
                return perr(e, 400, "loras", "invalid_value",
                            "'loras[%d].target' must be one of high, low, both.", i);
            l->target = t;
        } else {
            return perr(e, 400, "loras", "unknown_parameter", "Unknown parameter: 'loras[%d].%.32s'.", i, k);
        }
    }
    if (!have_name)
        return perr(e, 400, "loras", "missing_required_parameter", "'loras[%d]' has no 'name'.", i);
    return 0;
}

/* `loras`: a JSON array of adapters (replaces any earlier value). */
static int parse_loras(srv_params *p, const cJSON *v, srv_perr *e)
{
    p->n_loras = 0;
    if (!cJSON_IsArray(v))
        return perr(e, 400, "loras", "invalid_type",
                    "'loras' must be a list of {\"name\", \"scale\", \"target\"} objects.");
    int n = cJSON_GetArraySize(v);
    if (n > SRV_MAX_LORAS)
        return perr(e, 400, "loras", "invalid_value", "'loras' lists %d adapters; at most %d are allowed.", n,
                    SRV_MAX_LORAS);
    int i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++)
        if (parse_lora(it, i, &p->loras[i], e))
            return -1;
    p->n_loras = n;
    return 0;
}

static int check_text(const char *name, const char *s, size_t n, const srv_limits *lim, srv_perr *e)
{
    if (lim && lim->max_prompt && n > lim->max_prompt)
        return perr(e, 400, name, "string_above_max_length",
                    "'%s' is too long: %zu bytes, the limit is %zu.", name, n, lim->max_prompt);
    if (strlen(s) != n)
        return perr(e, 400, name, "invalid_value", "'%s' contains a NUL character.", name);
    return 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Sets one field from its text form `s` (n bytes; NUL-terminated at s[n]). */
static int set_field(srv_params *p, const char *key, const char *s, size_t n, const srv_limits *lim,
                     srv_perr *e)
{
    long long v;
    if (!strcmp(key, "prompt") || !strcmp(key, "negative_prompt")) {
        if (check_text(key, s, n, lim, e))
            return -1;
        char **dst = key[0] == 'p' ? &p->prompt : &p->negative_prompt;
        free(*dst);
        *dst = dup_n(s, n);
        if (!*dst)
            return perr(e, 500, key, "server_error", "Out of memory.");
        return 0;
    }
    if (!strcmp(key, "model")) {
        if (n >= sizeof p->model || strlen(s) != n)
            return perr(e, 400, key, "invalid_value", "'model' is too long.");
        memcpy(p->model, s, n + 1);
        return 0;
    }
    if (!strcmp(key, "seconds")) {
        double d;
        if (n >= sizeof p->seconds || parse_double(s, &d) || d <= 0 || d > 3600)
            return perr(e, 400, key, "invalid_value",
                        "'seconds' must be a positive number of seconds, got '%.32s'.", s);
        memcpy(p->seconds, s, n + 1);
        return 0;
    }
    if (!strcmp(key, "size")) {
        if (parse_size(s, &p->width, &p->height))
            return perr(e, 400, key, "invalid_value",
                        "'size' must be WIDTHxHEIGHT in pixels (e.g. 832x480), got '%.32s'.", s);
        return 0;
    }
    if (!strcmp(key, "seed")) {
        if (parse_u64(s, &p->seed))
            return perr(e, 400, key, "invalid_value",
                        "'seed' must be an integer in [0, 2^64), got '%.32s'.", s);
        p->has_seed = 1;
        return 0;
    }
    static const struct {
        const char *name;
        size_t off;
        long long lo, hi;
    } ints[] = {
        { "steps", offsetof(srv_params, steps), 1, 100000 },
        { "num_frames", offsetof(srv_params, num_frames), 1, 100000 },
        { "fps", offsetof(srv_params, fps), 1, 240 },
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (strcmp(key, ints[i].name) != 0)
            continue;
        if (parse_int(s, ints[i].lo, ints[i].hi, &v))
            return perr(e, 400, key, "invalid_value", "'%s' must be an integer in [%lld, %lld], got '%.32s'.",
                        key, ints[i].lo, ints[i].hi, s);
        *(int *)((char *)p + ints[i].off) = (int)v;
        return 0;
    }
    if (!strcmp(key, "guidance_scale") || !strcmp(key, "guidance_scale_2")) {
        double d;
        if (parse_double(s, &d) || d < 0 || d > 100)
            return perr(e, 400, key, "invalid_value", "'%s' must be a number in [0, 100], got '%.32s'.",
                        key, s);
        *(key[14] ? &p->guidance_scale_2 : &p->guidance_scale) = d;
        return 0;
    }
    if (!strcmp(key, "sampler")) {
        for (int i = 0; i < 3; i++)
            if (!strcasecmp(s, k_samplers[i])) {
                p->sampler = i;
                return 0;
            }
        return perr(e, 400, key, "invalid_value",
                    "'sampler' must be one of unipc, euler, dpmpp, got '%.32s'.", s);
    }
    if (!strcmp(key, "loras")) { /* JSON text, from a form field or a JSON string */
        if (strlen(s) != n)
            return perr(e, 400, key, "invalid_value", "'loras' contains a NUL character.");
        if (!s[strspn(s, " \t\r\n")]) { /* an empty form field: none */
            p->n_loras = 0;
            return 0;
        }
        cJSON *v = cJSON_ParseWithLength(s, n);
        if (!v)
            return perr(e, 400, key, "invalid_json",
                        "'loras' must be JSON: a list of {\"name\", \"scale\", \"target\"} objects.");
        int rc = parse_loras(p, v, e);
        cJSON_Delete(v);
        return rc;
    }
    if (!strcmp(key, "input_reference"))
        return perr(e, 400, key, "unsupported_parameter",
                    "'input_reference' is not supported: this server generates from text only.");
    return perr(e, 400, key, "unknown_parameter", "Unknown parameter: '%.48s'.", key);
}

static void params_init(srv_params *p)
{
    memset(p, 0, sizeof *p);
    p->guidance_scale = -1;
    p->guidance_scale_2 = -1;
    p->sampler = -1;
}

void srv_params_free(srv_params *p)
{
    if (!p)
        return;
    free(p->prompt);
    free(p->negative_prompt);
    params_init(p);
}

/* ---- bodies ----------------------------------------------------------------------------------- */

static int params_from_json(const uint8_t *body, size_t len, const srv_limits *lim, srv_params *p,
                            srv_perr *e)
{
    cJSON *root = cJSON_ParseWithLength((const char *)body, len);
    if (!root)
        return perr(e, 400, NULL, "invalid_json",
                    "We could not parse the JSON body of your request. (HINT: This likely means you "
                    "aren't using your HTTP library correctly.)");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return perr(e, 400, NULL, "invalid_json", "The request body must be a JSON object.");
    }
    int rc = 0;
    char num[64];
    for (const cJSON *it = root->child; it && !rc; it = it->next) {
        const char *key = it->string ? it->string : "";
        if (cJSON_IsNull(it))
            continue;
        if (cJSON_IsString(it)) {
            rc = set_field(p, key, it->valuestring, strlen(it->valuestring), lim, e);
        } else if (cJSON_IsNumber(it)) {
            double d = it->valuedouble;
            if (d == floor(d) && fabs(d) < 9.007199254740992e15)
                snprintf(num, sizeof num, "%.0f", d);
            else
                snprintf(num, sizeof num, "%.17g", d);
            rc = set_field(p, key, num, strlen(num), lim, e);
        } else if ((cJSON_IsArray(it) || cJSON_IsObject(it)) && !strcmp(key, "loras")) {
            rc = parse_loras(p, it, e);
        } else if (cJSON_IsBool(it) || cJSON_IsObject(it) || cJSON_IsArray(it)) {
            if (!strcmp(key, "input_reference"))
                rc = set_field(p, key, "", 0, lim, e);
            else
                rc = perr(e, 400, key, "invalid_type", "'%.48s' must be a string or a number.", key);
        }
    }
    cJSON_Delete(root);
    return rc;
}

int srv_multipart_boundary(const char *ct, char *buf, size_t buflen)
{
    const char *b = strcasestr(ct, "boundary=");
    if (!b)
        return -1;
    b += 9;
    size_t n = 0;
    if (*b == '"') {
        b++;
        while (b[n] && b[n] != '"')
            n++;
        if (b[n] != '"')
            return -1;
    } else {
        while (b[n] && b[n] != ';' && b[n] != ' ' && b[n] != '\t')
            n++;
    }
    if (n == 0 || n > 70 || n + 1 > buflen)
        return -1;
    memcpy(buf, b, n);
    buf[n] = 0;
    return 0;
}

static const uint8_t *find_bytes(const uint8_t *h, size_t hl, const char *needle, size_t nl)
{
    return nl <= hl ? memmem(h, hl, needle, nl) : NULL;
}

/* Reads the name and filename from the headers of one part [h, h+hl). */
static int part_headers(const uint8_t *h, size_t hl, srv_form_field *f, srv_perr *e)
{
    const uint8_t *end = h + hl;
    int have_name = 0;
    while (h < end) {
        const uint8_t *eol = find_bytes(h, (size_t)(end - h), "\r\n", 2);
        size_t ll = eol ? (size_t)(eol - h) : (size_t)(end - h);
        static const char cd[] = "content-disposition:";
        if (ll >= sizeof cd - 1 && !strncasecmp((const char *)h, cd, sizeof cd - 1)) {
            char line[512];
            if (ll >= sizeof line)
                return perr(e, 400, NULL, "invalid_multipart", "A multipart header is too long.");
            memcpy(line, h, ll);
            line[ll] = 0;
            const char *nm = strstr(line, " name=\"");
            if (!nm)
                nm = strstr(line, ";name=\"");
            if (nm) {
                nm += 7;
                const char *q = strchr(nm, '"');
                if (!q || (size_t)(q - nm) >= sizeof f->name)
                    return perr(e, 400, NULL, "invalid_multipart", "A multipart field name is malformed.");
                memcpy(f->name, nm, (size_t)(q - nm));
                f->name[q - nm] = 0;
                have_name = 1;
            }
            f->is_file = strstr(line, "filename=") != NULL;
        }
        h += ll + (eol ? 2 : 0);
    }
    if (!have_name)
        return perr(e, 400, NULL, "invalid_multipart", "A multipart part has no field name.");
    return 0;
}

int srv_multipart_parse(const char *boundary, const uint8_t *body, size_t len, srv_form *out,
                        srv_perr *e)
{
    memset(out, 0, sizeof *out);
    char delim[80];
    int dl = snprintf(delim, sizeof delim, "--%s", boundary);
    if (dl < 3 || (size_t)dl >= sizeof delim)
        return perr(e, 400, NULL, "invalid_multipart", "The multipart boundary is malformed.");
    const uint8_t *p = find_bytes(body, len, delim, (size_t)dl);
    const uint8_t *end = body + len;
    if (!p)
        return perr(e, 400, NULL, "invalid_multipart", "The multipart body has no boundary line.");
    char next[84];
    int nl = snprintf(next, sizeof next, "\r\n--%s", boundary);
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return 0; /* closing delimiter */
        const uint8_t *hs = find_bytes(p, (size_t)(end - p), "\r\n", 2);
        if (!hs)
            return perr(e, 400, NULL, "invalid_multipart", "The multipart body is truncated.");
        hs += 2;
        const uint8_t *he = find_bytes(hs, (size_t)(end - hs), "\r\n\r\n", 4);
        if (!he)
            return perr(e, 400, NULL, "invalid_multipart", "A multipart part has no end of headers.");
        if (out->n >= SRV_FORM_MAX)
            return perr(e, 400, NULL, "invalid_multipart", "Too many multipart parts (limit %d).",
                        SRV_FORM_MAX);
        srv_form_field *f = &out->f[out->n];
        if (part_headers(hs, (size_t)(he - hs), f, e))
            return -1;
        const uint8_t *vs = he + 4;
        const uint8_t *ve = find_bytes(vs, (size_t)(end - vs), next, (size_t)nl);
        if (!ve)
            return perr(e, 400, NULL, "invalid_multipart", "The multipart body is truncated.");
        f->value = vs;
        f->len = (size_t)(ve - vs);
        out->n++;
        p = ve + 2;
    }
}

int srv_url_decode(const char *s, size_t len, char *buf, size_t buflen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= len)
                return -1;
            if (!isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]))
                return -1;
            char hex[3] = { s[i + 1], s[i + 2], 0 };
            c = (int)strtol(hex, NULL, 16);
            i += 2;
        }
        if (c == 0 || o + 1 >= buflen)
            return -1;
        buf[o++] = (char)c;
    }
    if (buflen == 0)
        return -1;
    buf[o] = 0;
    return (int)o;
}

/* Sets a field whose value is bytes [v, v+n) (copied and NUL-terminated first). */
static int set_field_bytes(srv_params *p, const char *key, const uint8_t *v, size_t n,
                           const srv_limits *lim, srv_perr *e)
{
    char *s = dup_n((const char *)v, n);
    if (!s)
        return perr(e, 500, key, "server_error", "Out of memory.");
    int rc = set_field(p, key, s, n, lim, e);
    free(s);
    return rc;
}

static int params_from_urlencoded(const uint8_t *body, size_t len, const srv_limits *lim, srv_params *p,
                                  srv_perr *e)
{
    const char *s = (const char *)body, *end = s + len;
    char *val = malloc(len + 1);
    if (!val)
        return perr(e, 500, NULL, "server_error", "Out of memory.");
    int rc = 0;
    while (s < end && !rc) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(pe - s));
        char key[64];
        if (pe == s) {
            s = pe + 1;
            continue;
        }
        if (!eq || srv_url_decode(s, (size_t)(eq - s), key, sizeof key) < 0) {
            rc = perr(e, 400, NULL, "invalid_body", "The form body is malformed near byte %zu.",
                      (size_t)(s - (const char *)body));
            break;
        }
        int vl = srv_url_decode(eq + 1, (size_t)(pe - eq - 1), val, len + 1);
        if (vl < 0)
            rc = perr(e, 400, key, "invalid_body", "The form value of '%.48s' is malformed.", key);
        else
            rc = set_field(p, key, val, (size_t)vl, lim, e);
        s = amp ? amp + 1 : end;
    }
    free(val);
    return rc;
}

static int params_from_multipart(const char *ct, const uint8_t *body, size_t len, const srv_limits *lim,
                                 srv_params *p, srv_perr *e)
{
    char boundary[80];
    if (srv_multipart_boundary(ct, boundary, sizeof boundary))
        return perr(e, 400, NULL, "invalid_multipart", "The multipart Content-Type has no valid boundary.");
    srv_form form;
    if (srv_multipart_parse(boundary, body, len, &form, e))
        return -1;
    for (int i = 0; i < form.n; i++) {
        const srv_form_field *f = &form.f[i];
        if (set_field_bytes(p, f->name, f->value, f->len, lim, e))
            return -1;
    }
    return 0;
}

int srv_params_parse(const char *ct, const uint8_t *body, size_t len, const srv_limits *lim,
                     srv_params *out, srv_perr *e)
{
    params_init(out);
    memset(e, 0, sizeof *e);
    int rc;
    if (!ct || !*ct || !strncasecmp(ct, "application/json", 16))
        rc = params_from_json(body, len, lim, out, e);
    else if (!strncasecmp(ct, "multipart/form-data", 19))
        rc = params_from_multipart(ct, body, len, lim, out, e);
    else if (!strncasecmp(ct, "application/x-www-form-urlencoded", 33))
        rc = params_from_urlencoded(body, len, lim, out, e);
    else
        rc = perr(e, 415, NULL, "unsupported_media_type",
                  "Unsupported Content-Type '%.64s': use application/json or multipart/form-data.", ct);
    if (!rc && !out->prompt)
        rc = perr(e, 400, "prompt", "missing_required_parameter", "Missing required parameter: 'prompt'.");
    if (!rc && !out->prompt[strspn(out->prompt, " \t\r\n")])
        rc = perr(e, 400, "prompt", "invalid_value", "'prompt' must not be empty.");
    if (rc)
        srv_params_free(out);
    return rc;
}

int srv_params_resolve(srv_params *p, const srv_defaults *d, const srv_limits *lim, srv_perr *e)
{
    memset(e, 0, sizeof *e);
    if (!p->width || !p->height) {
        p->width = d->width;
        p->height = d->height;
    }
    p->width = p->width / 16 * 16;
    p->height = p->height / 16 * 16;
    if (p->width < 16 || p->height < 16)
        return perr(e, 400, "size", "invalid_value", "'size' must be at least 16x16 pixels.");
    if (!p->fps)
        p->fps = d->fps > 0 ? d->fps : 16;
    if (p->num_frames) {
        p->seconds[0] = 0; /* num_frames wins; the reported length follows the frames */
    } else if (p->seconds[0]) {
        double s = strtod(p->seconds, NULL);
        double f = s * p->fps;
        if (f > 1e6)
            return perr(e, 400, "seconds", "invalid_value", "'seconds' is too large.");
        p->num_frames = (int)(f + 0.5) + 1;
    }
    /* a default the server's limits do not allow is lowered to the limit; a requested value is not */
    if (!p->num_frames) {
        p->num_frames = d->num_frames;
        if (lim && lim->max_frames && p->num_frames > lim->max_frames)
            p->num_frames = lim->max_frames;
    }
    if (p->num_frames < 1)
        return perr(e, 400, "num_frames", "invalid_value", "'num_frames' must be at least 1.");
    if ((p->num_frames - 1) % 4)
        p->num_frames = (p->num_frames - 1) / 4 * 4 + 1;
    if (!p->steps) {
        p->steps = d->steps;
        if (lim && lim->max_steps && p->steps > lim->max_steps)
            p->steps = lim->max_steps;
    }
    if (lim && lim->max_pixels && (int64_t)p->width * p->height > lim->max_pixels)
        return perr(e, 400, "size", "above_max_pixels",
                    "'size' %dx%d has %lld pixels per frame; this server allows at most %lld.", p->width,
                    p->height, (long long)p->width * p->height, (long long)lim->max_pixels);
    if (lim && lim->max_frames && p->num_frames > lim->max_frames)
        return perr(e, 400, p->seconds[0] ? "seconds" : "num_frames", "above_max_frames",
                    "The clip would have %d frames; this server allows at most %d.", p->num_frames,
                    lim->max_frames);
    if (lim && lim->max_steps && p->steps > lim->max_steps)
        return perr(e, 400, "steps", "above_max_steps", "'steps' is %d; this server allows at most %d.",
                    p->steps, lim->max_steps);
    return 0;
}

/* ---- headers ---------------------------------------------------------------------------------- */

int srv_range_parse(const char *h, int64_t size, int64_t *first, int64_t *last)
{
    if (!h)
        return 0;
    while (*h == ' ')
        h++;
    if (strncasecmp(h, "bytes=", 6) != 0)
        return 0;
    h += 6;
    if (strchr(h, ','))
        return 0;
    const char *dash = strchr(h, '-');
    if (!dash)
        return 0;
    char a[24], b[24];
    size_t al = (size_t)(dash - h), bl = strlen(dash + 1);
    if (al >= sizeof a || bl >= sizeof b)
        return 0;
    memcpy(a, h, al);
    a[al] = 0;
    memcpy(b, dash + 1, bl + 1);
    long long x, y;
    if (al == 0) { /* suffix: last y bytes */
        if (parse_int(b, 0, INT64_MAX, &y))
            return 0;
        if (y == 0 || size == 0)
            return -1;
        *first = y >= size ? 0 : size - y;
        *last = size - 1;
        return 1;
    }
    if (parse_int(a, 0, INT64_MAX, &x))
        return 0;
    if (bl == 0)
        y = INT64_MAX;
    else if (parse_int(b, 0, INT64_MAX, &y) || y < x)
        return 0;
    if (x >= size)
        return -1;
    *first = x;
    *last = y >= size ? size - 1 : y;
    return 1;
}

int srv_bearer_ok(const char *h, const char *key)
{
    if (!h || !key)
        return 0;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    size_t hl = strlen(h), kl = strlen(key);
    /* Compare over the key's length whatever the header holds, so the time does not depend on where
     * the first difference is; the length difference is folded in at the end. */
    unsigned diff = hl != kl;
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)(i < hl ? h[i] : 0);
    return diff == 0;
}
