/* jobs.c — the job store of `wan serve`: jobs in creation order behind one lock, persisted as
 * data_dir/jobs/<id>.json (atomically), run one at a time (or cfg->workers at a time) by worker threads
 * that call wan_generate, each with its own context.
 *
 * File ownership rule, which keeps a deleted job from coming back after a restart: while a job is
 * running only its worker touches its files; otherwise only request handlers do, under the lock. */
#define _GNU_SOURCE
#include "server.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const double srv_step_bucket_le[SRV_STEP_BUCKETS] = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };

static const char *k_status[] = { "queued", "in_progress", "completed", "failed" };
static const char *k_stage[] = { "text", "denoise", "decode", "done" };

const char *srv_status_name(srv_status s) { return s < SRV_STATUS_COUNT ? k_status[s] : "failed"; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void job_free(srv_job *j)
{
    if (!j)
        return;
    srv_params_free(&j->params);
    free(j);
}

static void job_path(const srv_store *s, const char *id, int kind, char *buf, size_t len)
{
    static const char *ext[] = { ".mp4", ".png", ".sprite.png", ".json" };
    snprintf(buf, len, "%s/%s%s", kind == 3 ? s->jobs_dir : s->videos_dir, id, ext[kind]);
}

/* ---- JSON ------------------------------------------------------------------------------------- */

static void add_num_or_null(cJSON *o, const char *k, int present, double v)
{
    if (present)
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

/* The adapters of a request as the `loras` field takes them. */
static cJSON *loras_json(const srv_params *p)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < p->n_loras; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "name", p->loras[i].name);
        cJSON_AddNumberToObject(l, "scale", p->loras[i].scale);
        cJSON_AddStringToObject(l, "target", srv_lora_target_name(p->loras[i].target));
        cJSON_AddItemToArray(a, l);
    }
    return a;
}

/* The request as a create body, kept in the job file so that a restart re-parses it. */
static cJSON *params_json(const srv_params *p)
{
    cJSON *o = cJSON_CreateObject();
    char buf[32];
    cJSON_AddStringToObject(o, "prompt", p->prompt);
    if (p->negative_prompt)
        cJSON_AddStringToObject(o, "negative_prompt", p->negative_prompt);
    if (p->model[0])
        cJSON_AddStringToObject(o, "model", p->model);
    snprintf(buf, sizeof buf, "%dx%d", p->width, p->height);
    cJSON_AddStringToObject(o, "size", buf);
    if (p->seconds[0]) /* frames follow from seconds and fps again on reload */
        cJSON_AddStringToObject(o, "seconds", p->seconds);
    else
        cJSON_AddNumberToObject(o, "num_frames", p->num_frames);
    cJSON_AddNumberToObject(o, "fps", p->fps);
    cJSON_AddNumberToObject(o, "steps", p->steps);
    if (p->guidance_scale >= 0)
        cJSON_AddNumberToObject(o, "guidance_scale", p->guidance_scale);
    if (p->guidance_scale_2 >= 0)
        cJSON_AddNumberToObject(o, "guidance_scale_2", p->guidance_scale_2);
    if (p->sampler >= 0)
        cJSON_AddStringToObject(o, "sampler", srv_sampler_name(p->sampler));
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)p->seed);
    cJSON_AddStringToObject(o, "seed", buf);
    if (p->n_loras)
        cJSON_AddItemToObject(o, "loras", loras_json(p));
    return o;
}

static int queue_position(const srv_store *s, const srv_job *j)
{
    int n = 0;
    for (int i = 0; i < s->n_jobs && s->jobs[i] != j; i++)
        n += s->jobs[i]->status == SRV_QUEUED;
    return n;
}

/* The OpenAI Video object plus our extensions; `persist` adds what a restart needs. */
static cJSON *job_json(const srv_store *s, const srv_job *j, int persist)
{
    const srv_params *p = &j->params;
    cJSON *o = cJSON_CreateObject();
    char buf[64];
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", "video");
    cJSON_AddNumberToObject(o, "created_at", (double)j->created_at);
    add_num_or_null(o, "completed_at", j->completed_at > 0, (double)j->completed_at);
    cJSON_AddNullToObject(o, "expires_at");
    cJSON_AddStringToObject(o, "model", j->model);
    cJSON_AddNumberToObject(o, "progress", j->progress);
    cJSON_AddStringToObject(o, "prompt", p->prompt);
    if (p->seconds[0])
        snprintf(buf, sizeof buf, "%s", p->seconds);
    else
        snprintf(buf, sizeof buf, "%.4g", (double)p->num_frames / p->fps);
    cJSON_AddStringToObject(o, "seconds", buf);
    snprintf(buf, sizeof buf, "%dx%d", p->width, p->height);
    cJSON_AddStringToObject(o, "size", buf);
    cJSON_AddStringToObject(o, "status", srv_status_name(j->status));
    if (j->status == SRV_FAILED) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", j->err_code);
        cJSON_AddStringToObject(e, "message", j->err_msg);
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    cJSON_AddNullToObject(o, "remixed_from_video_id");
    /* extensions */
    if (p->negative_prompt)
        cJSON_AddStringToObject(o, "negative_prompt", p->negative_prompt);
    else
        cJSON_AddNullToObject(o, "negative_prompt");
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)p->seed);
    cJSON_AddStringToObject(o, "seed", buf);
    cJSON_AddNumberToObject(o, "steps", p->steps);
    add_num_or_null(o, "guidance_scale", p->guidance_scale >= 0, p->guidance_scale);
    add_num_or_null(o, "guidance_scale_2", p->guidance_scale_2 >= 0, p->guidance_scale_2);
    cJSON_AddNumberToObject(o, "num_frames", p->num_frames);
    cJSON_AddNumberToObject(o, "fps", p->fps);
    cJSON_AddStringToObject(o, "sampler", srv_sampler_name(p->sampler));
    cJSON_AddItemToObject(o, "loras", loras_json(p));
    add_num_or_null(o, "started_at", j->started_at > 0, (double)j->started_at);
    if (j->status == SRV_RUNNING) {
        cJSON_AddStringToObject(o, "stage", k_stage[j->stage <= WAN_STAGE_DONE ? j->stage : 3]);
        cJSON_AddNumberToObject(o, "step", j->step);
        cJSON_AddNumberToObject(o, "n_steps", j->n_steps);
        cJSON_AddNumberToObject(o, "expert", j->expert);
        add_num_or_null(o, "eta_seconds", j->eta_s >= 0, j->eta_s);
        cJSON_AddNumberToObject(o, "elapsed_seconds", j->elapsed_s);
    }
    if (j->status == SRV_QUEUED)
        cJSON_AddNumberToObject(o, "queue_position", queue_position(s, j));
    if (j->status == SRV_COMPLETED) {
        cJSON *t = cJSON_AddObjectToObject(o, "timings");
        cJSON_AddNumberToObject(t, "text_seconds", j->t_text);
        cJSON_AddNumberToObject(t, "denoise_seconds", j->t_denoise);
        cJSON_AddNumberToObject(t, "decode_seconds", j->t_decode);
        cJSON_AddNumberToObject(t, "encode_seconds", j->t_encode);
        cJSON_AddNumberToObject(o, "peak_memory_bytes", (double)j->peak_bytes);
        cJSON_AddNumberToObject(o, "bytes", (double)j->mp4_bytes);
    }
    if (persist) {
        cJSON_AddItemToObject(o, "params", params_json(p));
        cJSON_AddNumberToObject(o, "attempts", j->attempts);
        cJSON_AddNumberToObject(o, "created_ns", (double)j->created_ns);
    }
    return o;
}

static char *job_json_str(const srv_store *s, const srv_job *j, int persist)
{
    cJSON *o = job_json(s, j, persist);
    char *str = persist ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return str;
}

/* Writes the job file from a JSON string made under the lock. */
static int persist_str(const srv_store *s, const char *id, const char *json)
{
    char path[4200];
    job_path(s, id, 3, path, sizeof path);
    if (!json || srv_write_atomic(path, json, strlen(json))) {
        fprintf(stderr, "wan serve: cannot write %s: %s\n", path, json ? strerror(errno) : "out of memory");
        return -1;
    }
    return 0;
}

static int persist_job(const srv_store *s, const srv_job *j)
{
    char *json = job_json_str(s, j, 1);
    int rc = persist_str(s, j->id, json);
    free(json);
    return rc;
}

static void unlink_job_files(const srv_store *s, const char *id)
{
    char path[4200];
    job_path(s, id, 3, path, sizeof path);
    unlink(path);
    for (int k = 0; k < 3; k++) {
        job_path(s, id, k, path, sizeof path);
        unlink(path);
    }
}

/* ---- store ------------------------------------------------------------------------------------ */

static void bump(srv_store *s, srv_job *j)
{
    s->version++;
    if (j)
        j->version++;
    pthread_cond_broadcast(&s->changed);
}

static srv_job *find_job(const srv_store *s, const char *id, int *index)
{
    for (int i = 0; i < s->n_jobs; i++)
        if (!strcmp(s->jobs[i]->id, id)) {
            if (index)
                *index = i;
            return s->jobs[i];
        }
    return NULL;
}

static void remove_at(srv_store *s, int i)
{
    memmove(s->jobs + i, s->jobs + i + 1, (size_t)(s->n_jobs - i - 1) * sizeof *s->jobs);
    s->n_jobs--;
}

/* Inserts keeping the array sorted by created_ns. */
static int insert_job(srv_store *s, srv_job *j)
{
    if (s->n_jobs == s->cap_jobs) {
        int cap = s->cap_jobs ? s->cap_jobs * 2 : 64;
        srv_job **nj = realloc(s->jobs, (size_t)cap * sizeof *nj);
        if (!nj)
            return -1;
        s->jobs = nj;
        s->cap_jobs = cap;
    }
    int i = s->n_jobs;
    while (i > 0 && s->jobs[i - 1]->created_ns > j->created_ns)
        i--;
    memmove(s->jobs + i + 1, s->jobs + i, (size_t)(s->n_jobs - i) * sizeof *s->jobs);
    s->jobs[i] = j;
    s->n_jobs++;
    return 0;
}

static int count_status(const srv_store *s, srv_status st)
{
    int n = 0;
    for (int i = 0; i < s->n_jobs; i++)
        n += s->jobs[i]->status == st;
    return n;
}

static void new_id(char *id)
{
    uint8_t r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    char *p = id + sprintf(id, "%s", SRV_ID_PREFIX);
    for (int i = 0; i < 16; i++)
        p += sprintf(p, "%02x", r[i]);
}

int srv_store_create(srv_store *s, srv_params *p, char **json, srv_perr *e)
{
    pthread_mutex_lock(&s->lock);
    int active = count_status(s, SRV_QUEUED) + count_status(s, SRV_RUNNING) + s->reserved;
    if (s->stop || active >= s->cfg->max_queue) {
        s->n_rejected++;
        pthread_mutex_unlock(&s->lock);
        e->status = s->stop ? 503 : 429;
        snprintf(e->code, sizeof e->code, "%s", s->stop ? "server_shutting_down" : "queue_full");
        snprintf(e->msg, sizeof e->msg,
                 s->stop ? "The server is shutting down; try again later."
                         : "The queue is full (%d jobs queued or running); try again later.",
                 active);
        return -1;
    }
    s->reserved++;
    pthread_mutex_unlock(&s->lock);

    srv_job *j = calloc(1, sizeof *j);
    if (!j) {
        pthread_mutex_lock(&s->lock);
        s->reserved--;
        pthread_mutex_unlock(&s->lock);
        e->status = 500;
        snprintf(e->msg, sizeof e->msg, "Out of memory.");
        return -1;
    }
    new_id(j->id);
    if (!p->has_seed) {
        if (getrandom(&p->seed, sizeof p->seed, 0) != sizeof p->seed)
            p->seed = (uint64_t)time(NULL);
        p->seed &= 0xffffffffull; /* the torch generator keeps the low 32 bits */
        p->has_seed = 1;
    }
    j->params = *p;
    memset(p, 0, sizeof *p);
    snprintf(j->model, sizeof j->model, "%s", s->model_name);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    j->created_at = ts.tv_sec;
    j->created_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    j->status = SRV_QUEUED;
    j->expert = -1;
    j->eta_s = -1;
    /* The job is not visible yet, so its file is written without the lock: accepted means on disk. */
    int rc = persist_job(s, j);
    pthread_mutex_lock(&s->lock);
    s->reserved--;
    if (rc || insert_job(s, j)) {
        pthread_mutex_unlock(&s->lock);
        char path[4200];
        job_path(s, j->id, 3, path, sizeof path);
        unlink(path);
        job_free(j);
        e->status = 500;
        snprintf(e->code, sizeof e->code, "server_error");
        snprintf(e->msg, sizeof e->msg, "The job could not be stored.");
        return -1;
    }
    s->n_created++;
    *json = job_json_str(s, j, 0);
    bump(s, j);
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

char *srv_store_get_json(srv_store *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    srv_job *j = find_job(s, id, NULL);
    char *json = j ? job_json_str(s, j, 0) : NULL;
    pthread_mutex_unlock(&s->lock);
    return json;
}

char *srv_store_list_json(srv_store *s, const char *after, int limit, int desc, srv_perr *e)
{
    pthread_mutex_lock(&s->lock);
    int start = desc ? s->n_jobs - 1 : 0, dir = desc ? -1 : 1;
    if (after) {
        int i;
        if (!find_job(s, after, &i)) {
            pthread_mutex_unlock(&s->lock);
            e->status = 404;
            snprintf(e->param, sizeof e->param, "after");
            snprintf(e->code, sizeof e->code, "not_found");
            snprintf(e->msg, sizeof e->msg, "No video found with id '%s'.", after);
            return NULL;
        }
        start = i + dir;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    int n = 0, i = start;
    const srv_job *first = NULL, *last = NULL;
    for (; i >= 0 && i < s->n_jobs && n < limit; i += dir, n++) {
        cJSON_AddItemToArray(data, job_json(s, s->jobs[i], 0));
        if (!first)
            first = s->jobs[i];
        last = s->jobs[i];
    }
    if (first)
        cJSON_AddStringToObject(o, "first_id", first->id);
    else
        cJSON_AddNullToObject(o, "first_id");
    if (last)
        cJSON_AddStringToObject(o, "last_id", last->id);
    else
        cJSON_AddNullToObject(o, "last_id");
    cJSON_AddBoolToObject(o, "has_more", i >= 0 && i < s->n_jobs);
    pthread_mutex_unlock(&s->lock);
    char *str = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return str;
}

static void fail_job(srv_job *j, const char *code, const char *msg)
{
    j->status = SRV_FAILED;
    j->completed_at = time(NULL);
    snprintf(j->err_code, sizeof j->err_code, "%s", code);
    snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
}

int srv_store_delete(srv_store *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    int i;
    srv_job *j = find_job(s, id, &i);
    if (!j) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    remove_at(s, i);
    if (j->status == SRV_RUNNING) {
        /* its worker cleans up when wan_generate returns */
        j->deleted = 1;
        j->cancel = 1;
        if (j->ctx)
            wan_ctx_cancel(j->ctx);
    } else {
        if (j->status == SRV_QUEUED)
            s->n_cancelled++;
        unlink_job_files(s, j->id);
        job_free(j);
        j = NULL;
    }
    bump(s, NULL);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int srv_store_cancel(srv_store *s, const char *id, char **json)
{
    pthread_mutex_lock(&s->lock);
    srv_job *j = find_job(s, id, NULL);
    int rc = 0;
    if (!j) {
        rc = -1;
    } else if (j->status == SRV_QUEUED) {
        fail_job(j, "cancelled", "The job was cancelled before it started.");
        s->n_cancelled++;
        persist_job(s, j);
    } else if (j->status == SRV_RUNNING) {
        j->cancel = 1;
        if (j->ctx)
            wan_ctx_cancel(j->ctx);
    } else {
        rc = -2;
    }
    if (j) {
        bump(s, j);
        *json = job_json_str(s, j, 0);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int srv_store_output_path(srv_store *s, const char *id, int variant, char *path, size_t len)
{
    pthread_mutex_lock(&s->lock);
    srv_job *j = find_job(s, id, NULL);
    int rc = !j ? -1 : j->status != SRV_COMPLETED ? -2 : 0;
    if (!rc)
        job_path(s, id, variant, path, len);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

char *srv_store_next_event(srv_store *s, const char *id, uint64_t *seen, int *done, int wait_ms)
{
    if (*done)
        return NULL;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    char *ev = NULL;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        srv_job *j = find_job(s, id, NULL);
        if (s->stop) {
            *done = 1;
            break;
        }
        if (!j) {
            if (asprintf(&ev, "event: deleted\ndata: {\"id\":\"%s\",\"deleted\":true}\n\n", id) < 0)
                ev = NULL;
            *done = 1;
            break;
        }
        if (j->version != *seen) {
            *seen = j->version;
            char *json = job_json_str(s, j, 0);
            if (!json || asprintf(&ev, "event: %s\nid: %llu\ndata: %s\n\n", srv_status_name(j->status),
                                  (unsigned long long)j->version, json) < 0)
                ev = NULL;
            free(json);
            *done = j->status == SRV_COMPLETED || j->status == SRV_FAILED;
            break;
        }
        if (pthread_cond_timedwait(&s->changed, &s->lock, &until) == ETIMEDOUT) {
            ev = strdup(": keep-alive\n\n");
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ev;
}

/* ---- workers ---------------------------------------------------------------------------------- */

typedef struct run_state {
    srv_store *s;
    srv_job *j;
    double t_last;
} run_state;

static int on_progress(const wan_progress *p, void *user)
{
    run_state *r = user;
    srv_store *s = r->s;
    double t = now_s();
    pthread_mutex_lock(&s->lock);
    srv_job *j = r->j;
    if (p->stage == WAN_STAGE_DENOISE && p->step > 0) {
        double dt = t - r->t_last;
        s->step_count++;
        s->step_sum += dt;
        for (int b = 0; b < SRV_STEP_BUCKETS; b++)
            s->step_buckets[b] += dt <= srv_step_bucket_le[b];
    }
    r->t_last = t;
    j->stage = p->stage;
    j->step = p->step;
    j->n_steps = p->n_steps;
    j->expert = p->expert;
    j->eta_s = p->eta_s;
    j->elapsed_s = p->elapsed_s;
    double f = p->n_steps > 0 ? (double)p->step / p->n_steps : 0;
    int pr = p->stage == WAN_STAGE_TEXT ? 2
             : p->stage == WAN_STAGE_DENOISE ? 5 + (int)(85 * f)
             : p->stage == WAN_STAGE_DECODE ? 90 + (int)(9 * f)
                                            : 99;
    if (pr > j->progress)
        j->progress = pr > 99 ? 99 : pr;
    int cancel = j->cancel;
    bump(s, j);
    pthread_mutex_unlock(&s->lock);
    return cancel != 0;
}

static wan_generate_params gen_params(const srv_store *s, const srv_job *j, run_state *r)
{
    const srv_params *p = &j->params;
    wan_generate_params g = wan_generate_default_params(s->model);
    g.prompt = p->prompt;
    if (p->negative_prompt)
        g.negative_prompt = p->negative_prompt;
    g.width = p->width;
    g.height = p->height;
    g.num_frames = p->num_frames;
    g.steps = p->steps;
    if (p->guidance_scale >= 0)
        g.guidance_scale = p->guidance_scale;
    if (p->guidance_scale_2 >= 0)
        g.guidance_scale_2 = p->guidance_scale_2;
    if (p->sampler >= 0)
        g.sampler = p->sampler;
    g.seed = p->seed;
    g.n_threads = s->cfg->n_threads;
    g.device = s->cfg->device;
    g.progress = on_progress;
    g.progress_user = r;
    return g;
}

/* Runs one job (its status is RUNNING, set under the lock by the caller) and records the result. Called
 * and returns without the lock. Returns 1 when the context was cancelled (the caller renews it). */
static int run_job(srv_store *s, srv_job *j, wan_ctx_t *ctx)
{
    run_state r = { s, j, now_s() };
    double t0 = r.t_last;
    wan_generate_params g = gen_params(s, j, &r);
    wan_video v;
    memset(&v, 0, sizeof v);
    /* the adapters are looked up again: the folder may have changed since the job was accepted, and a
     * job reloaded after a restart has only their names */
    wan_lora_use uses[SRV_MAX_LORAS];
    srv_perr le = { 0 };
    wan_status rc;
    if (j->params.n_loras && srv_loras_resolve(&s->loras, s->model, &j->params, uses, &le)) {
        rc = WAN_ERR_INVALID_ARG;
    } else {
        g.loras = uses;
        g.n_loras = j->params.n_loras;
        /* the shared mapped weights stay untouched either way; a GPU takes merged copies only */
        const char *d = s->cfg->device;
        g.lora_mode = !d || !*d || !strcmp(d, "cpu") ? WAN_LORA_RUNTIME : WAN_LORA_MERGE;
        rc = wan_generate(ctx, &g, &v);
    }
    char err[512] = "";
    char paths[3][4200];
    for (int k = 0; k < 3; k++)
        job_path(s, j->id, k, paths[k], sizeof paths[k]);
    double te = now_s();
    int wrote = rc == WAN_OK && !srv_write_outputs(&v, j->params.fps, paths[0], paths[1], paths[2], err,
                                                   sizeof err);
    te = now_s() - te;
    if (rc != WAN_OK)
        snprintf(err, sizeof err, "%s", le.status ? le.msg : wan_ctx_errmsg(ctx));
    struct stat st;
    int64_t bytes = wrote && !stat(paths[0], &st) ? (int64_t)st.st_size : 0;

    pthread_mutex_lock(&s->lock);
    int cancel = j->cancel;
    srv_job final = *j; /* the outcome, made visible only once it is on disk */
    final.progress = 100;
    if (wrote) {
        final.status = SRV_COMPLETED;
        final.completed_at = time(NULL);
        final.t_text = v.seconds_text;
        final.t_denoise = v.seconds_denoise;
        final.t_decode = v.seconds_decode;
        final.t_encode = te;
        final.peak_bytes = (int64_t)v.peak_bytes;
        final.mp4_bytes = bytes;
    } else if (rc == WAN_ERR_CANCELLED && cancel == 2) {
        final.status = SRV_QUEUED; /* shutdown: the next start runs it again */
        final.progress = 0;
        final.started_at = 0;
    } else if (rc == WAN_ERR_CANCELLED) {
        fail_job(&final, "cancelled", "The job was cancelled while running.");
    } else {
        fail_job(&final, rc == WAN_OK ? "output_failed" : rc == WAN_ERR_INVALID_ARG ? "invalid_request"
                                                                                  : "generation_failed",
                 err);
    }
    char *json = j->deleted ? NULL : job_json_str(s, &final, 1);
    pthread_mutex_unlock(&s->lock);
    wan_video_free(&v);

    if (json)
        persist_str(s, j->id, json);
    free(json);
    pthread_mutex_lock(&s->lock);
    if (j->deleted) { /* deleted while running or while its file was being written */
        pthread_mutex_unlock(&s->lock);
        unlink_job_files(s, j->id);
        job_free(j);
        return rc == WAN_ERR_CANCELLED;
    }
    *j = final;
    j->ctx = NULL;
    if (j->status == SRV_COMPLETED) {
        s->n_completed++;
        s->job_seconds_sum += now_s() - t0;
        s->job_seconds_count++;
    } else if (j->status == SRV_FAILED) {
        s->n_failed++;
        s->n_cancelled += rc == WAN_ERR_CANCELLED;
    }
    bump(s, j);
    pthread_mutex_unlock(&s->lock);
    return rc == WAN_ERR_CANCELLED;
}

static srv_job *next_queued(srv_store *s)
{
    for (int i = 0; i < s->n_jobs; i++)
        if (s->jobs[i]->status == SRV_QUEUED)
            return s->jobs[i];
    return NULL;
}

static void *worker_main(void *arg)
{
    srv_store *s = arg;
    char err[512];
    wan_ctx_t *ctx = NULL;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        srv_job *j;
        while (!s->stop && !(j = next_queued(s)))
            pthread_cond_wait(&s->work, &s->lock);
        if (s->stop)
            break;
        if (!ctx) {
            pthread_mutex_unlock(&s->lock);
            wan_status rc = wan_ctx_new(s->model, &ctx, err, sizeof err);
            pthread_mutex_lock(&s->lock);
            if (rc != WAN_OK) {
                fprintf(stderr, "wan serve: cannot create a context: %s\n", err);
                ctx = NULL;
                fail_job(j, "server_error", err);
                persist_job(s, j);
                s->n_failed++;
                bump(s, j);
                continue;
            }
            if (j->status != SRV_QUEUED) /* cancelled or deleted meanwhile */
                continue;
        }
        j->status = SRV_RUNNING;
        j->started_at = time(NULL);
        j->attempts++;
        j->ctx = ctx;
        j->cancel = 0;
        j->stage = WAN_STAGE_TEXT;
        j->step = j->n_steps = 0;
        j->expert = -1;
        j->eta_s = -1;
        j->progress = 1;
        char *json = job_json_str(s, j, 1);
        bump(s, j);
        pthread_mutex_unlock(&s->lock);
        persist_str(s, j->id, json);
        free(json);
        if (run_job(s, j, ctx)) {
            /* a cancelled context may keep its flag: start the next job on a fresh one */
            wan_ctx_free(ctx);
            ctx = NULL;
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    wan_ctx_free(ctx);
    return NULL;
}

/* ---- open, load, close ------------------------------------------------------------------------ */

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0755) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

static double jnum(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Rebuilds a job from its file. Returns NULL (and says why) when the file is unusable. */
static srv_job *load_job(srv_store *s, const char *id, const char *text, size_t len)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    const cJSON *pj = o ? cJSON_GetObjectItemCaseSensitive(o, "params") : NULL;
    char *pstr = cJSON_IsObject(pj) ? cJSON_PrintUnformatted(pj) : NULL;
    srv_job *j = calloc(1, sizeof *j);
    srv_perr e = { 0 };
    const char *st = o ? jstr(o, "status") : NULL;
    const char *fid = o ? jstr(o, "id") : NULL;
    if (!j || !pstr || !st || !fid || strcmp(fid, id) != 0 ||
        srv_params_parse(NULL, (const uint8_t *)pstr, strlen(pstr), NULL, &j->params, &e) ||
        srv_params_resolve(&j->params, &s->defaults, NULL, &e)) {
        fprintf(stderr, "wan serve: ignoring %s/%s.json: %s\n", s->jobs_dir, id,
                e.msg[0] ? e.msg : "not a job file");
        free(pstr);
        cJSON_Delete(o);
        if (j)
            srv_params_free(&j->params);
        free(j);
        return NULL;
    }
    free(pstr);
    memcpy(j->id, id, SRV_ID_LEN + 1);
    snprintf(j->model, sizeof j->model, "%s", jstr(o, "model") ? jstr(o, "model") : s->model_name);
    j->created_at = (int64_t)jnum(o, "created_at", 0);
    j->created_ns = (int64_t)jnum(o, "created_ns", (double)j->created_at * 1e9);
    j->attempts = (int)jnum(o, "attempts", 0);
    j->expert = -1;
    j->eta_s = -1;
    j->status = SRV_QUEUED;
    char mp4[4200];
    job_path(s, id, 0, mp4, sizeof mp4);
    if (!strcmp(st, "completed") && access(mp4, R_OK) == 0) {
        j->status = SRV_COMPLETED;
        j->progress = 100;
        j->started_at = (int64_t)jnum(o, "started_at", 0);
        j->completed_at = (int64_t)jnum(o, "completed_at", 0);
        j->mp4_bytes = (int64_t)jnum(o, "bytes", 0);
        j->peak_bytes = (int64_t)jnum(o, "peak_memory_bytes", 0);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "timings");
        j->t_text = jnum(t, "text_seconds", 0);
        j->t_denoise = jnum(t, "denoise_seconds", 0);
        j->t_decode = jnum(t, "decode_seconds", 0);
        j->t_encode = jnum(t, "encode_seconds", 0);
    } else if (!strcmp(st, "failed")) {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
        const char *code = err ? jstr(err, "code") : NULL, *msg = err ? jstr(err, "message") : NULL;
        fail_job(j, code ? code : "generation_failed", msg ? msg : "");
        j->completed_at = (int64_t)jnum(o, "completed_at", (double)j->completed_at);
        j->progress = 100;
    }
    cJSON_Delete(o);
    return j;
}

/* Reads a whole small file (job files are a few kB). */
static char *read_small(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1 << 24) && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            *len = fread(buf, 1, (size_t)n, f);
            buf[*len] = 0;
        }
    }
    fclose(f);
    return buf;
}

static int load_jobs(srv_store *s)
{
    DIR *d = opendir(s->jobs_dir);
    if (!d)
        return -1;
    struct dirent *de;
    int requeued = 0;
    char path[4400];
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        snprintf(path, sizeof path, "%s/%s", s->jobs_dir, n);
        if (strstr(n, ".tmp-")) {
            unlink(path); /* an interrupted atomic write */
            continue;
        }
        size_t nl = strlen(n);
        char id[SRV_ID_LEN + 1];
        if (nl != SRV_ID_LEN + 5 || strcmp(n + SRV_ID_LEN, ".json") != 0)
            continue;
        memcpy(id, n, SRV_ID_LEN);
        id[SRV_ID_LEN] = 0;
        size_t len = 0;
        char *text = srv_id_valid(id) ? read_small(path, &len) : NULL;
        srv_job *j = text ? load_job(s, id, text, len) : NULL;
        free(text);
        if (!j)
            continue;
        if (insert_job(s, j)) {
            job_free(j);
            closedir(d);
            return -1;
        }
        if (j->status == SRV_QUEUED) {
            requeued++;
            persist_job(s, j);
        }
    }
    closedir(d);
    if (s->n_jobs)
        fprintf(stderr, "wan serve: loaded %d jobs from %s (%d to run)\n", s->n_jobs, s->jobs_dir, requeued);
    return 0;
}

/* Removes temporary files and outputs whose job is gone (deleted before a crash finished it). */
static void clean_videos(srv_store *s)
{
    DIR *d = opendir(s->videos_dir);
    if (!d)
        return;
    struct dirent *de;
    char path[4400];
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.')
            continue;
        char id[SRV_ID_LEN + 1] = "";
        if (strlen(n) > SRV_ID_LEN)
            memcpy(id, n, SRV_ID_LEN);
        srv_job *j = id[0] ? find_job(s, id, NULL) : NULL;
        if (strstr(n, ".tmp-") || !j || j->status != SRV_COMPLETED) {
            snprintf(path, sizeof path, "%s/%s", s->videos_dir, n);
            unlink(path);
        }
    }
    closedir(d);
}

static void model_name(const char *dir, char *out, size_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = 0;
    const char *b = strrchr(tmp, '/');
    snprintf(out, len, "%s", b ? b + 1 : tmp);
}

static void model_defaults(const wan_model_t *m, srv_defaults *d)
{
    wan_generate_params g = wan_generate_default_params(m);
    const wan_pipeline_config *pc = wan_model_pipeline_config(m);
    int two = wan_model_transformer_config(m, 1) != NULL;
    int ti2v = pc && pc->expand_timesteps;
    d->width = g.width > 0 ? g.width : ti2v ? 1280 : 832;
    d->height = g.height > 0 ? g.height : ti2v ? 704 : 480;
    d->num_frames = g.num_frames > 0 ? g.num_frames : ti2v ? 121 : 81;
    d->steps = g.steps > 0 ? g.steps : two ? 40 : 50;
    d->fps = ti2v ? 24 : 16;
}

int srv_store_open(srv_store *s, const srv_config *cfg, const wan_model_t *model, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->model = model;
    srv_lora_cache_init(&s->loras, cfg->lora_dir);
    model_name(cfg->model_dir, s->model_name, sizeof s->model_name);
    model_defaults(model, &s->defaults);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(s->jobs_dir, sizeof s->jobs_dir, "%s/jobs", cfg->data_dir);
    snprintf(s->videos_dir, sizeof s->videos_dir, "%s/videos", cfg->data_dir);
    if (mkdir_p(s->jobs_dir) || mkdir_p(s->videos_dir)) {
        snprintf(err, errlen, "cannot create the data folder %s: %s", cfg->data_dir, strerror(errno));
        return -1;
    }
    if (load_jobs(s)) {
        snprintf(err, errlen, "cannot read the jobs in %s: %s", s->jobs_dir, strerror(errno));
        return -1;
    }
    clean_videos(s);
    return 0;
}

int srv_store_start(srv_store *s, char *err, size_t errlen)
{
    s->threads = calloc((size_t)s->cfg->workers, sizeof *s->threads);
    if (!s->threads) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < s->cfg->workers; i++) {
        int rc = pthread_create(&s->threads[i], NULL, worker_main, s);
        if (rc) {
            snprintf(err, errlen, "cannot start a worker thread: %s", strerror(rc));
            return -1;
        }
        s->n_threads++;
    }
    return 0;
}

void srv_store_stop(srv_store *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    for (int i = 0; i < s->n_jobs; i++) {
        srv_job *j = s->jobs[i];
        if (j->status == SRV_RUNNING && !j->cancel) {
            j->cancel = 2;
            if (j->ctx)
                wan_ctx_cancel(j->ctx);
        }
    }
    pthread_cond_broadcast(&s->work);
    bump(s, NULL);
    pthread_mutex_unlock(&s->lock);
}

void srv_store_close(srv_store *s)
{
    if (!s->cfg)
        return;
    srv_store_stop(s);
    for (int i = 0; i < s->n_threads; i++)
        pthread_join(s->threads[i], NULL);
    free(s->threads);
    for (int i = 0; i < s->n_jobs; i++)
        job_free(s->jobs[i]);
    free(s->jobs);
    srv_lora_cache_free(&s->loras);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->changed);
    memset(s, 0, sizeof *s);
}

/* ---- health and metrics ----------------------------------------------------------------------- */

char *srv_store_health(srv_store *s)
{
    pthread_mutex_lock(&s->lock);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", s->stop ? "stopping" : "ok");
    cJSON_AddStringToObject(o, "model", s->model_name);
    cJSON_AddStringToObject(o, "version", wan_version());
    cJSON_AddNumberToObject(o, "queued", count_status(s, SRV_QUEUED));
    cJSON_AddNumberToObject(o, "running", count_status(s, SRV_RUNNING));
    cJSON_AddNumberToObject(o, "workers", s->n_threads);
    pthread_mutex_unlock(&s->lock);
    char *str = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return str;
}

typedef struct strbuf {
    char *p;
    size_t n, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(strbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = b->p ? vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap) : -1;
        va_end(ap);
        if (w >= 0 && (size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        char *np = realloc(b->p, cap);
        if (!np)
            return;
        b->p = np;
        b->cap = cap;
    }
}

char *srv_store_metrics(srv_store *s)
{
    strbuf b = { 0 };
    pthread_mutex_lock(&s->lock);
    sb_printf(&b, "# HELP wan_queue_depth Jobs waiting for a worker.\n# TYPE wan_queue_depth gauge\n"
                  "wan_queue_depth %d\n", count_status(s, SRV_QUEUED));
    sb_printf(&b, "# HELP wan_jobs Jobs in the store by state.\n# TYPE wan_jobs gauge\n");
    for (int st = 0; st < SRV_STATUS_COUNT; st++)
        sb_printf(&b, "wan_jobs{state=\"%s\"} %d\n", k_status[st], count_status(s, (srv_status)st));
    static const char *ctr[] = { "created", "completed", "failed", "cancelled", "rejected" };
    const uint64_t val[] = { s->n_created, s->n_completed, s->n_failed, s->n_cancelled, s->n_rejected };
    for (int i = 0; i < 5; i++)
        sb_printf(&b, "# HELP wan_jobs_%s_total Jobs %s since start.\n# TYPE wan_jobs_%s_total counter\n"
                      "wan_jobs_%s_total %llu\n", ctr[i], ctr[i], ctr[i], ctr[i], (unsigned long long)val[i]);
    sb_printf(&b, "# HELP wan_step_seconds Seconds per denoising step.\n# TYPE wan_step_seconds histogram\n");
    for (int i = 0; i < SRV_STEP_BUCKETS; i++)
        sb_printf(&b, "wan_step_seconds_bucket{le=\"%g\"} %llu\n", srv_step_bucket_le[i],
                  (unsigned long long)s->step_buckets[i]);
    sb_printf(&b, "wan_step_seconds_bucket{le=\"+Inf\"} %llu\nwan_step_seconds_sum %.6f\n"
                  "wan_step_seconds_count %llu\n", (unsigned long long)s->step_count, s->step_sum,
              (unsigned long long)s->step_count);
    sb_printf(&b, "# HELP wan_job_seconds Seconds from start to finish of completed jobs.\n"
                  "# TYPE wan_job_seconds summary\nwan_job_seconds_sum %.6f\nwan_job_seconds_count %llu\n",
              s->job_seconds_sum, (unsigned long long)s->job_seconds_count);
    pthread_mutex_unlock(&s->lock);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    sb_printf(&b, "# HELP wan_memory_peak_bytes Peak host memory allocated by the library.\n"
                  "# TYPE wan_memory_peak_bytes gauge\nwan_memory_peak_bytes %zu\n", wan_mem_peak());
    sb_printf(&b, "# HELP wan_memory_current_bytes Host memory allocated by the library now.\n"
                  "# TYPE wan_memory_current_bytes gauge\nwan_memory_current_bytes %zu\n", wan_mem_current());
    sb_printf(&b, "# HELP wan_process_max_rss_bytes Peak resident set size of the process.\n"
                  "# TYPE wan_process_max_rss_bytes gauge\nwan_process_max_rss_bytes %lld\n",
              (long long)ru.ru_maxrss * 1024);
    return b.p;
}
