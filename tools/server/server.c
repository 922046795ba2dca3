/* server.c — `wan serve`: the HTTP side (libmicrohttpd, one thread per connection, so a slow client or
 * an event stream never holds up another), the OpenAI-compatible Videos API on top of the job store,
 * and the command line. Generation runs on the store's worker threads, never on an HTTP thread. */
#define _GNU_SOURCE
#include "server.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct server {
    srv_config cfg;
    srv_store store;
    struct MHD_Daemon *daemon;
    atomic_ullong n_requests;
    atomic_ullong n_unauthorized;
} server;

typedef struct request {
    srv_route route;
    int route_status;
    char *body;
    size_t len, cap;
    int too_large;
} request;

/* ---- responses -------------------------------------------------------------------------------- */

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, char *data, size_t len,
                                const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, char *json)
{
    if (!json)
        return MHD_NO;
    return send_buf(c, status, json, strlen(json), "application/json");
}

/* OpenAI's error shape: {"error": {"message", "type", "param", "code"}}. */
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *code,
                                  const char *param, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", status >= 500 ? "server_error" : "invalid_request_error");
    if (param && *param)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    if (code && *code)
        cJSON_AddStringToObject(e, "code", code);
    else
        cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return send_json(c, status, s);
}

static enum MHD_Result send_perr(struct MHD_Connection *c, const srv_perr *e)
{
    return send_error(c, (unsigned)(e->status ? e->status : 400), e->code, e->param, e->msg);
}

static enum MHD_Result not_found(struct MHD_Connection *c, const char *id)
{
    char msg[128];
    snprintf(msg, sizeof msg, "No video found with id '%s'.", id);
    return send_error(c, 404, "not_found", "video_id", msg);
}

/* ---- handlers --------------------------------------------------------------------------------- */

static enum MHD_Result h_create(server *sv, struct MHD_Connection *c, request *rq)
{
    if (rq->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "The request body is larger than %zu bytes.", sv->cfg.max_body);
        return send_error(c, 413, "request_too_large", NULL, msg);
    }
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    srv_params p;
    srv_perr e;
    if (srv_params_parse(ct, (const uint8_t *)(rq->body ? rq->body : ""), rq->len, &sv->cfg.limits, &p, &e))
        return send_perr(c, &e);
    wan_lora_use uses[SRV_MAX_LORAS]; /* only checked here; the worker looks them up again */
    if (srv_params_resolve(&p, &sv->store.defaults, &sv->cfg.limits, &e) ||
        (p.n_loras && srv_loras_resolve(&sv->store.loras, sv->store.model, &p, uses, &e))) {
        srv_params_free(&p);
        return send_perr(c, &e);
    }
    char *json = NULL;
    if (srv_store_create(&sv->store, &p, &json, &e)) {
        srv_params_free(&p);
        return send_perr(c, &e);
    }
    return send_json(c, 200, json);
}

static int query_int(struct MHD_Connection *c, const char *k, int def, int lo, int hi, srv_perr *e)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k);
    if (!v)
        return def;
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        e->status = 400;
        snprintf(e->param, sizeof e->param, "%s", k);
        snprintf(e->code, sizeof e->code, "invalid_value");
        snprintf(e->msg, sizeof e->msg, "'%s' must be an integer in [%d, %d].", k, lo, hi);
        return def;
    }
    return (int)x;
}

static enum MHD_Result h_list(server *sv, struct MHD_Connection *c)
{
    srv_perr e = { 0 };
    int limit = query_int(c, "limit", 20, 1, 100, &e);
    const char *order = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "order");
    const char *after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
    if (!e.status && order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        e.status = 400;
        snprintf(e.param, sizeof e.param, "order");
        snprintf(e.code, sizeof e.code, "invalid_value");
        snprintf(e.msg, sizeof e.msg, "'order' must be 'asc' or 'desc'.");
    }
    if (!e.status && after && !srv_id_valid(after)) {
        e.status = 400;
        snprintf(e.param, sizeof e.param, "after");
        snprintf(e.code, sizeof e.code, "invalid_value");
        snprintf(e.msg, sizeof e.msg, "'after' is not a video id.");
    }
    if (e.status)
        return send_perr(c, &e);
    char *json = srv_store_list_json(&sv->store, after, limit, !order || !strcmp(order, "desc"), &e);
    return json ? send_json(c, 200, json) : send_perr(c, &e);
}

static enum MHD_Result send_json_polled(struct MHD_Connection *c, char *json)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    /* the openai SDK's videos.poll() waits this long between polls */
    MHD_add_response_header(r, "openai-poll-after-ms", "250");
    enum MHD_Result rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result h_content(server *sv, struct MHD_Connection *c, const char *id)
{
    const char *variant = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "variant");
    int v = !variant || !strcmp(variant, "video") ? 0 : !strcmp(variant, "thumbnail") ? 1
                                                      : !strcmp(variant, "spritesheet") ? 2 : -1;
    if (v < 0)
        return send_error(c, 400, "invalid_value", "variant",
                          "'variant' must be one of 'video', 'thumbnail', 'spritesheet'.");
    char path[4200];
    int rc = srv_store_output_path(&sv->store, id, v, path, sizeof path);
    if (rc == -1)
        return not_found(c, id);
    if (rc == -2)
        return send_error(c, 409, "video_not_ready", "video_id",
                          "The video is not ready: its status is not 'completed'.");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        if (fd >= 0)
            close(fd);
        return not_found(c, id);
    }
    int64_t size = st.st_size, first = 0, last = size - 1;
    int range = v == 0 ? srv_range_parse(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE),
                                         size, &first, &last)
                       : 0;
    char cr[96];
    if (range < 0) {
        close(fd);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        snprintf(cr, sizeof cr, "bytes */%lld", (long long)size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        enum MHD_Result q = MHD_queue_response(c, 416, r);
        MHD_destroy_response(r);
        return q;
    }
    if (!range) {
        first = 0;
        last = size - 1;
    }
    struct MHD_Response *r = MHD_create_response_from_fd_at_offset64((uint64_t)(last - first + 1), fd,
                                                                      (uint64_t)first);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, v == 0 ? "video/mp4" : "image/png");
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "private, max-age=3600");
    if (range) {
        snprintf(cr, sizeof cr, "bytes %lld-%lld/%lld", (long long)first, (long long)last, (long long)size);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
    enum MHD_Result q = MHD_queue_response(c, range ? 206 : 200, r);
    MHD_destroy_response(r);
    return q;
}

/* Server-sent events: the job's Video object after every change, a comment every 15 s meanwhile. */
typedef struct sse_state {
    srv_store *store;
    char id[SRV_ID_LEN + 1];
    uint64_t seen;
    int done;
    char *pending;
    size_t off, len;
} sse_state;

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse_state *st = cls;
    while (st->off == st->len) {
        free(st->pending);
        st->pending = srv_store_next_event(st->store, st->id, &st->seen, &st->done, 15000);
        st->off = 0;
        st->len = st->pending ? strlen(st->pending) : 0;
        if (!st->pending)
            return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = st->len - st->off < max ? st->len - st->off : max;
    memcpy(buf, st->pending + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void sse_free(void *cls)
{
    sse_state *st = cls;
    free(st->pending);
    free(st);
}

static enum MHD_Result h_events(server *sv, struct MHD_Connection *c, const char *id)
{
    char *json = srv_store_get_json(&sv->store, id);
    if (!json)
        return not_found(c, id);
    free(json);
    sse_state *st = calloc(1, sizeof *st);
    if (!st)
        return MHD_NO;
    st->store = &sv->store;
    memcpy(st->id, id, sizeof st->id);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, st, sse_free);
    if (!r) {
        free(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result q = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return q;
}

static enum MHD_Result h_metrics(server *sv, struct MHD_Connection *c)
{
    char *m = srv_store_metrics(&sv->store);
    if (!m)
        return MHD_NO;
    char extra[512];
    snprintf(extra, sizeof extra,
             "# HELP wan_http_requests_total HTTP requests received.\n# TYPE wan_http_requests_total counter\n"
             "wan_http_requests_total %llu\n"
             "# HELP wan_http_unauthorized_total Requests refused for a missing or wrong API key.\n"
             "# TYPE wan_http_unauthorized_total counter\nwan_http_unauthorized_total %llu\n",
             (unsigned long long)atomic_load(&sv->n_requests),
             (unsigned long long)atomic_load(&sv->n_unauthorized));
    size_t n = strlen(m), e = strlen(extra);
    char *all = realloc(m, n + e + 1);
    if (!all) {
        free(m);
        return MHD_NO;
    }
    memcpy(all + n, extra, e + 1);
    return send_buf(c, 200, all, n + e, "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result dispatch(server *sv, struct MHD_Connection *c, request *rq)
{
    const char *id = rq->route.id;
    char *json = NULL;
    switch (rq->route.kind) {
    case SRV_ROUTE_PAGE: {
        size_t n = strlen(srv_page_html);
        char *page = malloc(n + 1);
        if (!page)
            return MHD_NO;
        memcpy(page, srv_page_html, n + 1);
        return send_buf(c, 200, page, n, "text/html; charset=utf-8");
    }
    case SRV_ROUTE_HEALTH:
        return send_json(c, 200, srv_store_health(&sv->store));
    case SRV_ROUTE_METRICS:
        return h_metrics(sv, c);
    case SRV_ROUTE_CREATE:
        return h_create(sv, c, rq);
    case SRV_ROUTE_LIST:
        return h_list(sv, c);
    case SRV_ROUTE_RETRIEVE:
        json = srv_store_get_json(&sv->store, id);
        return json ? send_json_polled(c, json) : not_found(c, id);
    case SRV_ROUTE_DELETE: {
        if (srv_store_delete(&sv->store, id))
            return not_found(c, id);
        char buf[128];
        snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"object\":\"video.deleted\",\"deleted\":true}", id);
        return send_json(c, 200, strdup(buf));
    }
    case SRV_ROUTE_CANCEL: {
        int rc = srv_store_cancel(&sv->store, id, &json);
        if (rc == -1)
            return not_found(c, id);
        if (rc == -2) {
            free(json);
            return send_error(c, 409, "video_finished", "video_id", "The video has already finished.");
        }
        return send_json(c, 200, json);
    }
    case SRV_ROUTE_CONTENT:
        return h_content(sv, c, id);
    case SRV_ROUTE_EVENTS:
        return h_events(sv, c, id);
    case SRV_ROUTE_LORAS:
        json = srv_lora_list_json(&sv->store.loras);
        return json ? send_json(c, 200, json)
                    : send_error(c, 500, "server_error", NULL, "The server cannot read its LoRA folder.");
    case SRV_ROUTE_NONE:
        break;
    }
    return send_error(c, 404, "not_found", NULL, "No such endpoint.");
}

/* First call for a request: route, authenticate, check the announced body size. Returns 1 when a
 * response was queued (the request ends there). */
static int precheck(server *sv, struct MHD_Connection *c, const char *url, const char *method, request *rq,
                    enum MHD_Result *res)
{
    rq->route_status = srv_route_parse(method, url, &rq->route);
    if (rq->route_status == 404) {
        *res = send_error(c, 404, "not_found", NULL, "No such endpoint.");
        return 1;
    }
    int open = rq->route.kind == SRV_ROUTE_HEALTH || rq->route.kind == SRV_ROUTE_PAGE;
    if (sv->cfg.api_key && !open &&
        !srv_bearer_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
                       sv->cfg.api_key)) {
        atomic_fetch_add(&sv->n_unauthorized, 1);
        *res = send_error(c, 401, "invalid_api_key", NULL,
                          "Missing or incorrect API key: send 'Authorization: Bearer <key>'.");
        return 1;
    }
    if (rq->route_status == 405) {
        *res = send_error(c, 405, "method_not_allowed", NULL, "This method is not allowed on this endpoint.");
        return 1;
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > sv->cfg.max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "The request body is larger than %zu bytes.", sv->cfg.max_body);
        *res = send_error(c, 413, "request_too_large", NULL, msg);
        return 1;
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **ctx)
{
    (void)version;
    server *sv = cls;
    request *rq = *ctx;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        *ctx = rq;
        atomic_fetch_add(&sv->n_requests, 1);
        enum MHD_Result res;
        if (precheck(sv, c, url, method, rq, &res))
            return res;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->too_large || rq->len + n > sv->cfg.max_body) {
            rq->too_large = 1;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 4096;
            while (cap < rq->len + n + 1)
                cap *= 2;
            char *nb = realloc(rq->body, cap);
            if (!nb)
                return MHD_NO;
            rq->body = nb;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload, n);
        rq->len += n;
        rq->body[rq->len] = 0;
        return MHD_YES;
    }
    return dispatch(sv, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    request *rq = *ctx;
    if (rq) {
        free(rq->body);
        free(rq);
        *ctx = NULL;
    }
}

/* ---- command line ----------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wan serve --model DIR [options]\n"
            "  --host ADDR          address to bind (default 127.0.0.1: loopback only)\n"
            "  --port N             port (default 8080; 0 picks a free one)\n"
            "  --api-key KEY        require 'Authorization: Bearer KEY' on every endpoint but /health and /\n"
            "  --api-key-file F     the same, with the key read from the first line of F\n"
            "                       (also: the WAN_API_KEY environment variable)\n"
            "  --data-dir DIR       where jobs and videos are kept (default ./wan-data)\n"
            "  --lora-dir DIR       LoRA adapters (.safetensors) that requests may name in 'loras'\n"
            "                       (default: none; requests with 'loras' are refused)\n"
            "  --max-queue N        queued + running jobs accepted at once (default 64)\n"
            "  --max-frames N       frames per clip (default 121)\n"
            "  --max-pixels N       width x height per frame (default 1280*720)\n"
            "  --max-steps N        denoising steps (default 100)\n"
            "  --max-prompt N       bytes of a prompt (default 8192)\n"
            "  --max-body N         bytes of a request body (default 1048576)\n"
            "  --workers N          jobs generated at a time (default 1)\n"
            "  --threads N          threads per job (default: all cores)\n"
            "  --device D           where jobs run the transformer and sampler: cpu (default), cuda, cuda:N\n"
            "                       (a `make cuda` build; request LoRAs are then merged per job)\n");
}

static int read_key_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "wan serve: cannot open the API key file %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!fgets(buf, (int)len, f))
        buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\r\n")] = 0;
    if (!buf[0]) {
        fprintf(stderr, "wan serve: the API key file %s is empty\n", path);
        return -1;
    }
    return 0;
}

static int parse_num(const char *opt, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || *end || x < lo || x > hi) {
        fprintf(stderr, "wan serve: %s needs an integer in [%lld, %lld]\n", opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* Parses argv into cfg; keybuf holds a key read from a file. Returns 0, 1 for --help, -1 on error. */
static int parse_args(int argc, char **argv, srv_config *cfg, char *keybuf, size_t keylen)
{
    *cfg = (srv_config){ .host = "127.0.0.1", .port = 8080, .data_dir = "wan-data", .max_queue = 64,
                         .max_body = 1 << 20, .workers = 1, .max_connections = 512,
                         .limits = { .max_prompt = 8192, .max_frames = 121, .max_pixels = 1280 * 720,
                                     .max_steps = 100 } };
    cfg->api_key = getenv("WAN_API_KEY");
    if (cfg->api_key && !*cfg->api_key)
        cfg->api_key = NULL;
    for (int i = 1; i < argc; i += 2) { /* every option but --help takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        int bad = 0;
        if (!strcmp(a, "--model"))
            cfg->model_dir = v;
        else if (!strcmp(a, "--host"))
            cfg->host = v;
        else if (!strcmp(a, "--device"))
            cfg->device = v;
        else if (!strcmp(a, "--data-dir"))
            cfg->data_dir = v;
        else if (!strcmp(a, "--lora-dir")) {
            struct stat st;
            cfg->lora_dir = v;
            errno = 0;
            if (v && (stat(v, &st) || !S_ISDIR(st.st_mode))) {
                fprintf(stderr, "wan serve: --lora-dir %s: %s\n", v, errno ? strerror(errno) : "not a folder");
                bad = 1;
            }
        }
        else if (!strcmp(a, "--api-key"))
            cfg->api_key = v;
        else if (!strcmp(a, "--api-key-file")) {
            bad = !v || read_key_file(v, keybuf, keylen);
            cfg->api_key = keybuf;
        } else if (!strcmp(a, "--port"))
            bad = parse_num(a, v, 0, 65535, &x) || (cfg->port = (int)x, 0);
        else if (!strcmp(a, "--max-queue"))
            bad = parse_num(a, v, 1, 100000, &x) || (cfg->max_queue = (int)x, 0);
        else if (!strcmp(a, "--max-frames"))
            bad = parse_num(a, v, 1, 100000, &x) || (cfg->limits.max_frames = (int)x, 0);
        else if (!strcmp(a, "--max-pixels"))
            bad = parse_num(a, v, 256, (long long)1 << 40, &x) || (cfg->limits.max_pixels = x, 0);
        else if (!strcmp(a, "--max-steps"))
            bad = parse_num(a, v, 1, 100000, &x) || (cfg->limits.max_steps = (int)x, 0);
        else if (!strcmp(a, "--max-prompt"))
            bad = parse_num(a, v, 1, 1 << 20, &x) || (cfg->limits.max_prompt = (size_t)x, 0);
        else if (!strcmp(a, "--max-body"))
            bad = parse_num(a, v, 1024, (long long)1 << 30, &x) || (cfg->max_body = (size_t)x, 0);
        else if (!strcmp(a, "--workers"))
            bad = parse_num(a, v, 1, 64, &x) || (cfg->workers = (int)x, 0);
        else if (!strcmp(a, "--threads"))
            bad = parse_num(a, v, 0, 1024, &x) || (cfg->n_threads = (int)x, 0);
        else {
            fprintf(stderr, "wan serve: unknown option '%s'\n", a);
            return -1;
        }
        if (bad || !v) {
            if (!v)
                fprintf(stderr, "wan serve: %s needs a value\n", a);
            return -1;
        }
    }
    if (!cfg->model_dir) {
        fprintf(stderr, "wan serve: --model DIR is required\n");
        return -1;
    }
    if (cfg->api_key && !*cfg->api_key) {
        fprintf(stderr, "wan serve: the API key is empty\n");
        return -1;
    }
    return 0;
}

static struct MHD_Daemon *start_daemon(server *sv)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", sv->cfg.port);
    int gai = getaddrinfo(sv->cfg.host, port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "wan serve: cannot resolve --host %s: %s\n", sv->cfg.host, gai_strerror(gai));
        return NULL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, sv, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, sv, MHD_OPTION_CONNECTION_LIMIT, (unsigned)sv->cfg.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d)
        fprintf(stderr, "wan serve: cannot listen on %s:%d: %s\n", sv->cfg.host, sv->cfg.port,
                errno ? strerror(errno) : "libmicrohttpd refused");
    return d;
}

static int g_signal_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;
    if (write(g_signal_pipe[1], &c, 1) < 0) {
        /* the pipe is full: a shutdown is already under way */
    }
    errno = saved;
}

int cmd_serve(int argc, char **argv)
{
    static server sv; /* one server per process; static so that nothing large sits on the stack */
    char keybuf[512], err[1024];
    int pa = parse_args(argc, argv, &sv.cfg, keybuf, sizeof keybuf);
    if (pa) {
        usage(pa > 0 ? stdout : stderr);
        return pa > 0 ? 0 : 2;
    }
    /* SIGTERM/SIGINT may land on any thread (OpenBLAS starts its own before main), so the handler only
     * writes to a pipe that the main thread waits on. */
    if (pipe2(g_signal_pipe, O_CLOEXEC) || fcntl(g_signal_pipe[1], F_SETFL, O_NONBLOCK)) {
        fprintf(stderr, "wan serve: pipe: %s\n", strerror(errno));
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    wan_model_t *model = NULL;
    char dev[160];
    if (wan_device_check(sv.cfg.device, dev, sizeof dev, err, sizeof err) != WAN_OK) {
        fprintf(stderr, "wan serve: --device %s: %s\n", sv.cfg.device, err);
        goto out;
    }
    if (wan_model_load(sv.cfg.model_dir, NULL, &model, err, sizeof err) != WAN_OK) {
        fprintf(stderr, "wan serve: %s\n", err);
        goto out;
    }
    if (srv_store_open(&sv.store, &sv.cfg, model, err, sizeof err)) {
        fprintf(stderr, "wan serve: %s\n", err);
        goto out;
    }
    if (srv_store_start(&sv.store, err, sizeof err)) {
        fprintf(stderr, "wan serve: %s\n", err);
        goto out;
    }
    sv.daemon = start_daemon(&sv);
    if (!sv.daemon)
        goto out;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv.daemon, MHD_DAEMON_INFO_BIND_PORT);
    printf("wan serve: model %s, listening on http://%s:%u/ (data in %s%s)\n", sv.store.model_name,
           sv.cfg.host, di ? di->port : (unsigned)sv.cfg.port, sv.cfg.data_dir,
           sv.cfg.api_key ? ", API key required" : "");
    fflush(stdout);
    unsigned char sig = 0;
    while (read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR)
        ;
    fprintf(stderr, "wan serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    MHD_socket listen_fd = MHD_quiesce_daemon(sv.daemon); /* no new connections from here on */
    srv_store_stop(&sv.store);
    MHD_stop_daemon(sv.daemon);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    rc = 0;
out:
    srv_store_close(&sv.store);
    wan_model_free(model);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    close(g_signal_pipe[0]);
    close(g_signal_pipe[1]);
    return rc;
}
