/* loras.c — the LoRA adapters of `wan serve --lora-dir DIR`: requests name files in DIR; each is loaded
 * (memory-mapped and parsed by wan_lora_load) on first use and kept, read-only, for every later job and
 * every worker (a wan_lora_t may be shared by threads, see wan.h). Adapters are applied per request on the
 * fly, so the model's mapped weights never change and jobs with different adapters do not interfere.
 *
 * A file replaced under the same name (another inode, size or modification time) is loaded again for the
 * jobs that start after the change; the old copy stays mapped until the server exits, since a running job
 * may still use it. */
#define _GNU_SOURCE
#include "server.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int lerr(srv_perr *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int lerr(srv_perr *e, int status, const char *code, const char *fmt, ...)
{
    e->status = status;
    snprintf(e->param, sizeof e->param, "loras");
    snprintf(e->code, sizeof e->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void srv_lora_cache_init(srv_lora_cache *c, const char *dir)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    c->dir = dir;
}

void srv_lora_cache_free(srv_lora_cache *c)
{
    for (int i = 0; i < c->n; i++)
        wan_lora_free(c->e[i].lora);
    free(c->e);
    pthread_mutex_destroy(&c->lock);
    memset(c, 0, sizeof *c);
}

/* Library messages name the file by its full path; clients see only the name (the server's folders are
 * none of their business). Replaces every `path` in msg by `name`, in place. */
static void hide_path(char *msg, const char *path, const char *name)
{
    size_t pl = strlen(path), nl = strlen(name);
    char *at;
    while (pl > nl && (at = strstr(msg, path))) {
        memmove(at + nl, at + pl, strlen(at + pl) + 1);
        memcpy(at, name, nl);
    }
}

static int same_file(const srv_lora_entry *x, const struct stat *st)
{
    return x->dev == (uint64_t)st->st_dev && x->ino == (uint64_t)st->st_ino && x->size == (int64_t)st->st_size &&
           x->mtime_ns == (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int srv_lora_get(srv_lora_cache *c, const char *name, const wan_lora_t **out, srv_perr *e)
{
    *out = NULL;
    if (!c->dir)
        return lerr(e, 400, "loras_disabled",
                    "This server has no LoRA folder: it must be started with --lora-dir DIR to accept 'loras'.");
    if (!srv_lora_name_valid(name))
        return lerr(e, 400, "invalid_lora_name", "'%.64s' is not a plain .safetensors file name.", name);
    char path[4096 + SRV_LORA_NAME_MAX + 2];
    snprintf(path, sizeof path, "%s/%s", c->dir, name);
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode))
        return lerr(e, 400, "lora_not_found", "There is no LoRA adapter '%s' in the server's LoRA folder.", name);
    pthread_mutex_lock(&c->lock);
    for (int i = c->n - 1; i >= 0; i--) { /* the newest copy of this name */
        if (strcmp(c->e[i].name, name) != 0)
            continue;
        if (same_file(&c->e[i], &st)) {
            *out = c->e[i].lora;
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
        break;
    }
    int rc = 0;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        srv_lora_entry *ne = realloc(c->e, (size_t)cap * sizeof *ne);
        if (!ne) {
            pthread_mutex_unlock(&c->lock);
            return lerr(e, 500, "server_error", "Out of memory.");
        }
        c->e = ne;
        c->cap = cap;
    }
    srv_lora_entry *x = &c->e[c->n];
    memset(x, 0, sizeof *x);
    char msg[1024];
    wan_status ls = wan_lora_load(path, &x->lora, msg, sizeof msg);
    if (ls != WAN_OK) {
        hide_path(msg, path, name);
        fprintf(stderr, "wan serve: LoRA %s: %s\n", path, msg);
        rc = lerr(e, ls == WAN_ERR_NOMEM ? 500 : 400, ls == WAN_ERR_NOMEM ? "server_error" : "invalid_lora",
                  "The LoRA adapter '%s' cannot be used: %s", name, msg);
    } else {
        snprintf(x->name, sizeof x->name, "%s", name);
        x->dev = (uint64_t)st.st_dev;
        x->ino = (uint64_t)st.st_ino;
        x->size = (int64_t)st.st_size;
        x->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        *out = x->lora;
        c->n++;
        fprintf(stderr, "wan serve: loaded LoRA %s\n", path);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int srv_loras_resolve(srv_lora_cache *c, const wan_model_t *model, const srv_params *p, wan_lora_use *uses,
                      srv_perr *e)
{
    for (int i = 0; i < p->n_loras; i++) {
        const srv_lora *l = &p->loras[i];
        const wan_lora_t *lora;
        if (srv_lora_get(c, l->name, &lora, e))
            return -1;
        char msg[1024];
        if (wan_lora_check(model, lora, (wan_lora_target)l->target, msg, sizeof msg) != WAN_OK) {
            char path[4096 + SRV_LORA_NAME_MAX + 2];
            snprintf(path, sizeof path, "%s/%s", c->dir, l->name);
            hide_path(msg, path, l->name);
            return lerr(e, 400, "invalid_lora", "The LoRA adapter '%s' does not fit this model (target %s): %s",
                        l->name, srv_lora_target_name(l->target), msg);
        }
        uses[i] = (wan_lora_use){ .lora = lora, .path = NULL, .scale = l->scale,
                                  .target = (wan_lora_target)l->target };
    }
    return 0;
}

static int cmp_item(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(cJSON_GetObjectItemCaseSensitive(x, "name")->valuestring,
                  cJSON_GetObjectItemCaseSensitive(y, "name")->valuestring);
}

char *srv_lora_list_json(srv_lora_cache *c)
{
    enum { MAX_LISTED = 1000 };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddBoolToObject(o, "enabled", c->dir != NULL);
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    DIR *d = c->dir ? opendir(c->dir) : NULL;
    if (c->dir && !d) {
        fprintf(stderr, "wan serve: cannot read the LoRA folder %s: %s\n", c->dir, strerror(errno));
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *items[MAX_LISTED];
    int n = 0;
    struct dirent *de;
    char path[4096 + SRV_LORA_NAME_MAX + 2];
    while (d && n < MAX_LISTED && (de = readdir(d))) {
        struct stat st;
        if (!srv_lora_name_valid(de->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", c->dir, de->d_name);
        if (stat(path, &st) || !S_ISREG(st.st_mode))
            continue;
        cJSON *it = cJSON_CreateObject();
        cJSON_AddStringToObject(it, "object", "lora");
        cJSON_AddStringToObject(it, "name", de->d_name);
        cJSON_AddNumberToObject(it, "bytes", (double)st.st_size);
        cJSON_AddNumberToObject(it, "modified_at", (double)st.st_mtim.tv_sec);
        items[n++] = it;
    }
    if (d)
        closedir(d);
    qsort(items, (size_t)n, sizeof *items, cmp_item);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(data, items[i]);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
