/* server.h — `wan serve`: the job store and its workers (jobs.c), media files (media.c), the HTTP side
 * (server.c) and the web page (page.c). Built on wan.h only. */
#ifndef WAN_SERVER_H
#define WAN_SERVER_H

#include "http_parse.h"
#include "wan.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Entry point of `wan serve` (declared for the command table in tools/cli/cli.h too). */
int cmd_serve(int argc, char **argv);

typedef enum srv_status {
    SRV_QUEUED = 0,
    SRV_RUNNING,
    SRV_COMPLETED,
    SRV_FAILED,
    SRV_STATUS_COUNT
} srv_status;

/* OpenAI's name of a status: "queued", "in_progress", "completed", "failed". */
const char *srv_status_name(srv_status s);

typedef struct srv_job {
    char id[SRV_ID_LEN + 1];
    srv_params params;        /* resolved request (owned)                                  */
    char model[128];          /* the model id reported to clients                          */
    int64_t created_at, started_at, completed_at; /* unix seconds, 0 when not yet          */
    int64_t created_ns;       /* creation time in ns: the order of the queue and the list   */
    uint64_t version;         /* bumped on every change of this job (event streams)         */
    srv_status status;
    int attempts;             /* times a worker started it (restarts count)                */
    /* live progress (only while running) */
    wan_stage stage;
    int step, n_steps, expert;
    double eta_s, elapsed_s;
    int progress;             /* 0..100                                                    */
    /* results */
    char err_code[48];
    char err_msg[512];
    double t_text, t_denoise, t_decode, t_encode;
    int64_t peak_bytes, mp4_bytes;
    /* control (guarded by the store lock) */
    int cancel;               /* 1: the user cancelled; 2: server shutdown (re-queue)       */
    int deleted;              /* removed from the store while running; the worker frees it  */
    wan_ctx_t *ctx;           /* the context running it, while running                      */
} srv_job;

typedef struct srv_config {
    const char *model_dir;
    const char *host;
    int port;
    const char *api_key;      /* NULL: no authentication                                   */
    const char *data_dir;
    int max_queue;            /* queued + running jobs                                      */
    size_t max_body;          /* bytes of a request body                                    */
    srv_limits limits;
    int workers;              /* jobs run at a time                                         */
    int n_threads;            /* threads per job (0: OpenMP default)                        */
    int max_connections;
    const char *lora_dir;     /* folder of LoRA adapters requests may name; NULL: none      */
    const char *device;       /* compute device of every job (NULL: cpu), see wan_generate_params */
} srv_config;

/* loras.c: the adapters of --lora-dir, each loaded on first use and kept for the server's life
 * (read-only, shared by every worker); a file replaced under the same name is loaded again. */
typedef struct srv_lora_entry {
    char name[SRV_LORA_NAME_MAX + 1];
    wan_lora_t *lora;
    uint64_t dev, ino;        /* the file it was loaded from                                */
    int64_t size, mtime_ns;
} srv_lora_entry;

typedef struct srv_lora_cache {
    pthread_mutex_t lock;     /* guards the entries                                         */
    const char *dir;          /* NULL: LoRAs are disabled                                   */
    srv_lora_entry *e;
    int n, cap;
} srv_lora_cache;

/* Sets up an empty cache for `dir` (NULL: requests with loras are refused). */
void srv_lora_cache_init(srv_lora_cache *c, const char *dir);
/* Frees every adapter; no job may be running. */
void srv_lora_cache_free(srv_lora_cache *c);
/* The adapter `name` (a file in the folder), loaded now unless cached and unchanged on disk. Returns 0
 * with *out (owned by the cache, valid until srv_lora_cache_free), or -1 with *e: 400 with code
 * loras_disabled, invalid_lora_name, lora_not_found or invalid_lora (the message says why, naming the
 * file but not the folder), 500 when out of memory. Thread-safe. */
int srv_lora_get(srv_lora_cache *c, const char *name, const wan_lora_t **out, srv_perr *e);
/* Looks up every adapter of p (srv_lora_get), checks it against the model for its target
 * (wan_lora_check: 400 invalid_lora when it does not fit) and fills uses[0 .. p->n_loras). Returns 0
 * or -1 with *e. Thread-safe. */
int srv_loras_resolve(srv_lora_cache *c, const wan_model_t *model, const srv_params *p, wan_lora_use *uses,
                      srv_perr *e);
/* GET /v1/loras: {"object":"list","enabled":bool,"data":[{"object":"lora","name","bytes","modified_at"}]}
 * with the .safetensors files of the folder by name (malloc'd), or NULL when it cannot be read. */
char *srv_lora_list_json(srv_lora_cache *c);

/* Prometheus histogram of denoising step seconds. */
#define SRV_STEP_BUCKETS 10
extern const double srv_step_bucket_le[SRV_STEP_BUCKETS];

/* The job store: every job in creation order, persisted under data_dir/jobs/<id>.json, outputs under
 * data_dir/videos/<id>.mp4 and <id>.png. One lock guards everything; `changed` is broadcast on every
 * change (progress, status, deletion, shutdown) for the event streams. */
typedef struct srv_store {
    pthread_mutex_t lock;
    pthread_cond_t work;      /* a job was queued, or stop                                  */
    pthread_cond_t changed;   /* anything changed (CLOCK_MONOTONIC)                         */
    srv_job **jobs;
    int n_jobs, cap_jobs;
    uint64_t version;         /* bumped on every change                                     */
    int stop;
    int reserved;             /* creations between the queue check and the insertion        */
    const srv_config *cfg;
    const wan_model_t *model;
    srv_lora_cache loras;     /* the adapters of cfg->lora_dir                              */
    char model_name[128];
    srv_defaults defaults;
    char jobs_dir[4096], videos_dir[4096];
    pthread_t *threads;
    int n_threads;
    /* metrics */
    uint64_t n_created, n_completed, n_failed, n_cancelled, n_rejected;
    uint64_t step_count, step_buckets[SRV_STEP_BUCKETS];
    double step_sum;
    double job_seconds_sum;
    uint64_t job_seconds_count;
} srv_store;

/* Prepares the data folder, loads every persisted job (queued and interrupted ones are queued again)
 * and removes stray temporary files. Returns 0, or -1 with a message in err. */
int srv_store_open(srv_store *s, const srv_config *cfg, const wan_model_t *model, char *err, size_t errlen);
/* Starts cfg->workers worker threads. Returns 0 or -1 with err. */
int srv_store_start(srv_store *s, char *err, size_t errlen);
/* Starts the shutdown: new jobs are refused, event streams end, a running job is cancelled and put back
 * in the queue (on disk too) so that the next start runs it again. Idempotent. */
void srv_store_stop(srv_store *s);
/* Stops (as srv_store_stop), waits for the workers, then frees everything. */
void srv_store_close(srv_store *s);

/* Creates a job from resolved params (taken over on success). Returns 0 and copies the job's JSON into
 * *json (malloc'd), or -1 with *e filled (429 when the queue is full, 500 on a write failure). */
int srv_store_create(srv_store *s, srv_params *p, char **json, srv_perr *e);

/* The job's Video object as JSON (malloc'd), or NULL when there is no such job. */
char *srv_store_get_json(srv_store *s, const char *id);

/* A page of jobs as an OpenAI list object (malloc'd): after = id or NULL, limit 1..100, order "asc" or
 * "desc". Returns NULL with *e filled when `after` is unknown. */
char *srv_store_list_json(srv_store *s, const char *after, int limit, int desc, srv_perr *e);

/* Deletes a job, cancelling it when queued or running. Returns 0, or -1 when there is no such job. */
int srv_store_delete(srv_store *s, const char *id);
/* Cancels a queued or running job (it ends as failed with code "cancelled"). Returns 0 with the job's
 * JSON in *json, -1 when there is no such job, -2 when it has already finished. */
int srv_store_cancel(srv_store *s, const char *id, char **json);

/* Path of a job's output (variant 0: the MP4, 1: the PNG thumbnail, 2: the PNG spritesheet) when the
 * job has completed. Returns 0, -1 when there is no such job, -2 when it is not completed yet. */
int srv_store_output_path(srv_store *s, const char *id, int variant, char *path, size_t len);

/* Server-sent events for one job: waits up to wait_ms for a change of the job (*seen: the job version
 * the caller last saw, start with 0) and returns the next event as text (malloc'd): the job's Video
 * object after a change, a "deleted" event when it is gone, or a keep-alive comment after wait_ms.
 * Returns NULL when the stream should end (*done set after the last event, or shutdown). */
char *srv_store_next_event(srv_store *s, const char *id, uint64_t *seen, int *done, int wait_ms);

/* Prometheus text exposition (malloc'd). */
char *srv_store_metrics(srv_store *s);
/* {"status":"ok",...} for /health (malloc'd). */
char *srv_store_health(srv_store *s);

/* media.c: writes the clip as an MP4 at `path` (atomically: a temporary name, fsync, rename), a PNG of
 * its first frame at `thumb` and a PNG spritesheet of up to 8 frames at `sheet`. Returns 0, or -1 with
 * a message in err. */
int srv_write_outputs(const wan_video *v, int fps, const char *path, const char *thumb, const char *sheet,
                      char *err, size_t errlen);
/* Writes `len` bytes to `path` atomically (temporary file in the same folder, fsync, rename, fsync of
 * the folder). Returns 0, or -1 with errno set. */
int srv_write_atomic(const char *path, const void *data, size_t len);

/* page.c: the web page served at "/". */
extern const char srv_page_html[];

#endif
