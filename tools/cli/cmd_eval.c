/* cmd_eval.c — `wan eval`: prompt adherence of a model of the synthetic shapes world (tools/shapes/).
 *
 * Generates every prompt of a prompt list (tools/shapes/eval_prompts.tsv: held-out combinations of shape,
 * colour, background and motion, in English and Chinese) with the engine, reads each video back with a
 * simple probe and prints the accuracy per attribute and language. The probe is the one of
 * tools/shapes/world.py (`probe`), step for step, so that tools/shapes/eval_ref.py (diffusers' WanPipeline on
 * the same prompts and seeds) scores identical frames identically (world.probe's docstring describes it):
 * background from the border, object colour from the core of the pixels that differ from it, motion from
 * the centroid track of the half-contrast outline, shape from its fill and the height of its centroid.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROBE_DIFF 120
#define PROBE_MIN_PIXELS 12
#define PROBE_STILL 6.0
#define PROBE_TRIANGLE_LOW 0.535
#define PROBE_FILL_SQUARE 0.88
#define MAX_COLOURS 32
#define MAX_MINS 8

static const char k_usage[] =
    "usage: wan eval --model DIR [--prompts FILE] [--limit N] [--lang en|zh] [--size WxH] [--frames N]\n"
    "                [--steps N] [--cfg X] [--cfg2 X] [--threads N] [--device cpu|cuda|cuda:N] [--save DIR]\n"
    "                [--strip OUT.png]\n"
    "                [--only I,J,...] [--min ATTR=X]... [--probe-only DIR] [--quiet]\n"
    "\n"
    "Generates the prompts of a shapes-world prompt list (default: DIR/eval_prompts.tsv, written by\n"
    "tools/shapes/make_data.py) with their seeds and an empty negative prompt, probes each video (colour of the\n"
    "object, background colour, direction of motion, shape) and prints the accuracy per attribute and language.\n"
    "--limit N       only the first N prompts of each language\n"
    "--only I,J,...  only these prompts (0-based positions in the list)\n"
    "--save DIR      also write each video's frames as DIR/NNN.safetensors (U8 [F,H,W,3]) for eval_ref.py\n"
    "--strip FILE    a PNG of the first videos' frames, one row per prompt (at most 6 rows)\n"
    "--probe-only DIR  score DIR/NNN.safetensors (`frames`, as --save writes) instead of generating\n"
    "--min ATTR=X    exit 1 unless the accuracy of ATTR (colour, background, motion, shape, all) is at least X\n"
    "                in every language; repeatable\n"
    "Settings not given come from the list's `setting` lines.\n";

enum { A_COLOUR, A_BACKGROUND, A_MOTION, A_SHAPE, A_ALL, N_ATTR };
static const char *const k_attr[N_ATTR] = { "colour", "background", "motion", "shape", "all" };

typedef struct colour_def {
    char name[32];
    int rgb[3];
} colour_def;

typedef struct eval_prompt {
    char lang[8];
    uint64_t seed;
    char want[4][32]; /* shape, colour, background, motion (file order) */
    char *text;
} eval_prompt;

typedef struct eval_list {
    colour_def colours[MAX_COLOURS];
    int n_colours;
    eval_prompt *prompts;
    int n, cap;
    int width, height, frames, steps;
    double cfg, cfg2;
} eval_list;

typedef struct probe_result {
    const char *shape, *colour, *background, *motion; /* NULL: could not tell */
} probe_result;

/* ---------------------------------------------------------------------------------------------------------
 * The probe (tools/shapes/world.py: probe) */

static const char *nearest_colour(const eval_list *l, const int rgb[3])
{
    const char *best = NULL;
    long best_d = 0;
    for (int i = 0; i < l->n_colours; i++) {
        long d = 0;
        for (int c = 0; c < 3; c++)
            d += (long)(rgb[c] - l->colours[i].rgb[c]) * (rgb[c] - l->colours[i].rgb[c]);
        if (!best || d < best_d) {
            best = l->colours[i].name;
            best_d = d;
        }
    }
    return best;
}

/* Lower median of a 256-bin histogram holding n values: the first v with cumsum >= (n + 1) / 2. */
static int hist_median(const long hist[256], long n)
{
    long half = (n + 1) / 2, acc = 0;
    for (int v = 0; v < 256; v++)
        if ((acc += hist[v]) >= half)
            return v;
    return 255;
}

/* Per-channel lower medians of the pixels of `frames` selected by keep(diff) (NULL: the border ring). */
static long channel_medians(const uint8_t *frames, const int *diff, int F, int H, int W, int min_diff, int rgb[3])
{
    long hist[3][256] = { { 0 } }, n = 0;
    for (int f = 0; f < F; f++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                size_t i = ((size_t)f * H + y) * W + x;
                if (diff ? diff[i] < min_diff : (y >= 2 && y < H - 2 && x >= 2 && x < W - 2))
                    continue;
                for (int c = 0; c < 3; c++)
                    hist[c][frames[i * 3 + c]]++;
                n++;
            }
    for (int c = 0; c < 3; c++)
        rgb[c] = n ? hist_median(hist[c], n) : 0;
    return n;
}

/* Outline centroid, fill and relative centroid height of each frame with enough pixels; returns their count. */
static int outline_tracks(const int *diff, int F, int H, int W, int contrast, double *cx, double *cy, double *fill,
                          double *low)
{
    int nv = 0;
    for (int f = 0; f < F && nv < 256; f++) {
        long cnt = 0, sx = 0, sy = 0;
        int x0 = W, x1 = -1, y0 = H, y1 = -1;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                if (2 * diff[((size_t)f * H + y) * W + x] <= contrast)
                    continue;
                cnt++, sx += x, sy += y;
                x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
            }
        if (cnt < PROBE_MIN_PIXELS)
            continue;
        cx[nv] = (double)sx / (double)cnt;
        cy[nv] = (double)sy / (double)cnt;
        fill[nv] = (double)cnt / ((double)(x1 - x0 + 1) * (double)(y1 - y0 + 1));
        low[nv] = (cy[nv] - y0 + 0.5) / (double)(y1 - y0 + 1);
        nv++;
    }
    return nv;
}

static void probe_video(const eval_list *l, const uint8_t *frames, int F, int H, int W, probe_result *r)
{
    memset(r, 0, sizeof *r);
    int bg[3], obj[3];
    channel_medians(frames, NULL, F, H, W, 0, bg);
    r->background = nearest_colour(l, bg);
    size_t np = (size_t)F * H * W;
    int *diff = malloc(np * sizeof *diff);
    if (!diff)
        return;
    long dhist[766] = { 0 }, n = 0;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *p = frames + i * 3;
        diff[i] = abs(p[0] - bg[0]) + abs(p[1] - bg[1]) + abs(p[2] - bg[2]);
        if (diff[i] > PROBE_DIFF)
            dhist[diff[i]]++, n++;
    }
    if (n == 0) {
        free(diff);
        return;
    }
    long half = (n + 1) / 2, acc = 0;
    int dmed = PROBE_DIFF + 1;
    while ((acc += dhist[dmed]) < half)
        dmed++;
    channel_medians(frames, diff, F, H, W, dmed, obj); /* the core: diff >= dmed (> PROBE_DIFF) */
    r->colour = nearest_colour(l, obj);
    int contrast = abs(obj[0] - bg[0]) + abs(obj[1] - bg[1]) + abs(obj[2] - bg[2]);
    double cx[256], cy[256], fill[256], low[256];
    int nv = outline_tracks(diff, F, H, W, contrast, cx, cy, fill, low);
    free(diff);
    if (nv < 2)
        return;
    int k = nv / 2 < 3 ? nv / 2 : 3;
    double dx = 0, dy = 0;
    for (int i = 0; i < k; i++) {
        dx += cx[nv - k + i] - cx[i];
        dy += cy[nv - k + i] - cy[i];
    }
    dx /= k;
    dy /= k;
    if (fmax(fabs(dx), fabs(dy)) < PROBE_STILL)
        r->motion = "still";
    else if (fabs(dx) >= fabs(dy))
        r->motion = dx > 0 ? "right" : "left";
    else
        r->motion = dy > 0 ? "down" : "up";
    double mf = 0, ml = 0;
    for (int i = 0; i < nv; i++)
        mf += fill[i], ml += low[i];
    mf /= nv;
    ml /= nv;
    r->shape = ml >= PROBE_TRIANGLE_LOW ? "triangle" : mf >= PROBE_FILL_SQUARE ? "square" : "circle";
}

/* ---------------------------------------------------------------------------------------------------------
 * The prompt list */

static void list_free(eval_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->prompts[i].text);
    free(l->prompts);
    memset(l, 0, sizeof *l);
}

/* Splits a line at tabs in place; returns the number of fields (at most max). */
static int split_tabs(char *s, char **f, int max)
{
    int n = 0;
    while (n < max) {
        f[n++] = s;
        char *t = strchr(s, '\t');
        if (!t)
            break;
        *t = 0;
        s = t + 1;
    }
    return n;
}

static int parse_line(eval_list *l, char *line, char *err, size_t errlen)
{
    char *f[9];
    int n = split_tabs(line, f, 9);
    if (!strcmp(f[0], "setting") && n == 3) {
        int ok = 1;
        if (!strcmp(f[1], "size"))
            ok = sscanf(f[2], "%dx%d", &l->width, &l->height) == 2;
        else if (!strcmp(f[1], "frames"))
            ok = sscanf(f[2], "%d", &l->frames) == 1;
        else if (!strcmp(f[1], "steps"))
            ok = sscanf(f[2], "%d", &l->steps) == 1;
        else if (!strcmp(f[1], "cfg"))
            ok = sscanf(f[2], "%lf", &l->cfg) == 1;
        else if (!strcmp(f[1], "cfg2"))
            ok = sscanf(f[2], "%lf", &l->cfg2) == 1;
        if (!ok)
            snprintf(err, errlen, "bad value '%s' for setting %s", f[2], f[1]);
        return ok;
    }
    if (!strcmp(f[0], "colour") && n == 5) {
        if (l->n_colours == MAX_COLOURS) {
            snprintf(err, errlen, "more than %d colours", MAX_COLOURS);
            return 0;
        }
        colour_def *c = &l->colours[l->n_colours++];
        snprintf(c->name, sizeof c->name, "%s", f[1]);
        for (int i = 0; i < 3; i++)
            if (sscanf(f[2 + i], "%d", &c->rgb[i]) != 1 || c->rgb[i] < 0 || c->rgb[i] > 255) {
                snprintf(err, errlen, "bad colour value '%s'", f[2 + i]);
                return 0;
            }
        return 1;
    }
    if (!strcmp(f[0], "prompt") && n == 8) {
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 64;
            eval_prompt *p = realloc(l->prompts, sizeof *p * (size_t)cap);
            if (!p) {
                snprintf(err, errlen, "out of memory");
                return 0;
            }
            l->prompts = p;
            l->cap = cap;
        }
        eval_prompt *p = &l->prompts[l->n];
        memset(p, 0, sizeof *p);
        snprintf(p->lang, sizeof p->lang, "%s", f[1]);
        char *end;
        errno = 0;
        p->seed = strtoull(f[2], &end, 10);
        if (errno || *end || end == f[2]) {
            snprintf(err, errlen, "bad seed '%s'", f[2]);
            return 0;
        }
        for (int i = 0; i < 4; i++)
            snprintf(p->want[i], sizeof p->want[i], "%s", f[3 + i]);
        if (cli_utf8_invalid_at(f[7], strlen(f[7])) != (size_t)-1 || !(p->text = strdup(f[7]))) {
            snprintf(err, errlen, "prompt text is not valid UTF-8 (or out of memory)");
            return 0;
        }
        l->n++;
        return 1;
    }
    snprintf(err, errlen, "unknown line kind '%s' or wrong number of fields (%d)", f[0], n);
    return 0;
}

static int list_load(const char *path, eval_list *l, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return 0;
    }
    char line[8192], why[512] = "";
    int lineno = 0, ok = 1;
    while (ok && fgets(line, sizeof line, fp)) {
        lineno++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (!len || line[0] == '#')
            continue;
        if (!(ok = parse_line(l, line, why, sizeof why)))
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
    }
    fclose(fp);
    if (ok && (!l->n || !l->n_colours)) {
        snprintf(err, errlen, "%s: no prompts or no colours", path);
        ok = 0;
    }
    if (!ok)
        list_free(l);
    return ok;
}

/* ---------------------------------------------------------------------------------------------------------
 * Running */

typedef struct eval_args {
    const char *model, *prompts, *lang, *save, *strip, *probe_only, *only, *device;
    int limit, threads, quiet, n_mins;
    int width, height, frames, steps;
    double cfg, cfg2;
    int min_attr[MAX_MINS];
    double min_value[MAX_MINS];
} eval_args;

typedef struct tally {
    char lang[8];
    int n, ok[N_ATTR];
} tally;

/* One option of `wan eval` (cli_parse_opts): 1 taken, 0 bad value, -1 unknown. */
static int set_opt(const char *k, const char *v, void *user)
{
    eval_args *a = user;
    int ok = 1;
    if (!strcmp(k, "--model")) a->model = v;
    else if (!strcmp(k, "--prompts")) a->prompts = v;
    else if (!strcmp(k, "--lang")) a->lang = v;
    else if (!strcmp(k, "--save")) a->save = v;
    else if (!strcmp(k, "--device")) a->device = v;
    else if (!strcmp(k, "--strip")) a->strip = v;
    else if (!strcmp(k, "--probe-only")) a->probe_only = v;
    else if (!strcmp(k, "--only")) {
        a->only = v;
        ok = *v && strspn(v, "0123456789,") == strlen(v);
    }
    else if (!strcmp(k, "--limit")) ok = sscanf(v, "%d", &a->limit) == 1 && a->limit > 0;
    else if (!strcmp(k, "--threads")) ok = sscanf(v, "%d", &a->threads) == 1 && a->threads >= 0;
    else if (!strcmp(k, "--size")) ok = sscanf(v, "%dx%d", &a->width, &a->height) == 2 && a->width > 0 && a->height > 0;
    else if (!strcmp(k, "--frames")) ok = sscanf(v, "%d", &a->frames) == 1 && a->frames > 0;
    else if (!strcmp(k, "--steps")) ok = sscanf(v, "%d", &a->steps) == 1 && a->steps > 0;
    else if (!strcmp(k, "--cfg")) ok = sscanf(v, "%lf", &a->cfg) == 1 && a->cfg >= 0;
    else if (!strcmp(k, "--cfg2")) ok = sscanf(v, "%lf", &a->cfg2) == 1 && a->cfg2 >= 0;
    else if (!strcmp(k, "--min")) {
        char name[32];
        double x;
        int j = 0;
        ok = a->n_mins < MAX_MINS && sscanf(v, "%31[a-z]=%lf", name, &x) == 2;
        while (ok && j < N_ATTR && strcmp(name, k_attr[j]))
            j++;
        ok = ok && j < N_ATTR;
        if (ok) {
            a->min_attr[a->n_mins] = j;
            a->min_value[a->n_mins++] = x;
        }
    } else
        return -1;
    return ok;
}

static int parse_args(int argc, char **argv, eval_args *a)
{
    const int r = cli_parse_opts(argc, argv, "wan eval", k_usage, &a->quiet, set_opt, a);
    if (r)
        return r;
    if (!a->model) {
        fprintf(stderr, "wan eval: --model is required\n\n%s", k_usage);
        return 2;
    }
    return 0;
}

static tally *tally_for(tally *t, int *nt, int max, const char *lang)
{
    for (int i = 0; i < *nt; i++)
        if (!strcmp(t[i].lang, lang))
            return &t[i];
    if (*nt == max)
        return NULL;
    memset(&t[*nt], 0, sizeof *t);
    snprintf(t[*nt].lang, sizeof t->lang, "%s", lang);
    return &t[(*nt)++];
}

/* Writes the first rows of frames side by side as one PNG: wan_video_write makes a one-frame PNG folder next
 * to `path`, whose frame is then renamed to `path`. */
static int write_strip(const char *path, const uint8_t *rows, size_t row_bytes, int n_rows, int F, int H, int W,
                       char *err, size_t errlen)
{
    int SW = F * W + (F - 1) * 2, SH = n_rows * H + (n_rows - 1) * 2;
    uint8_t *img = malloc((size_t)SW * SH * 3);
    if (!img) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    memset(img, 255, (size_t)SW * SH * 3);
    for (int r = 0; r < n_rows; r++)
        for (int f = 0; f < F; f++)
            for (int y = 0; y < H; y++)
                memcpy(img + (((size_t)r * (H + 2) + y) * SW + (size_t)f * (W + 2)) * 3,
                       rows + r * row_bytes + (((size_t)f * H + y) * W) * 3, (size_t)W * 3);
    char dir[4096], frame[4200];
    const char *slash = strrchr(path, '/'); /* a folder name without an extension: PNG frames */
    snprintf(dir, sizeof dir, "%.*swan_strip_tmp_%ld", slash ? (int)(slash - path + 1) : 0, path, (long)getpid());
    snprintf(frame, sizeof frame, "%s/frame_00000.png", dir);
    wan_status rc = wan_video_write(dir, img, 1, SH, SW, 1, NULL, err, errlen);
    free(img);
    if (rc == WAN_OK && rename(frame, path) != 0) {
        snprintf(err, errlen, "cannot rename %.1000s to %.1000s: %s", frame, path, strerror(errno));
        rc = WAN_ERR_IO;
    }
    remove(frame);
    rmdir(dir);
    return rc == WAN_OK;
}

static int in_list(const char *list, int i)
{
    for (const char *s = list; *s;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end != s && v == i)
            return 1;
        s = *end ? end + 1 : end;
    }
    return 0;
}

static int is_selected(const eval_args *a, int i, const eval_prompt *p, tally *t, int nt)
{
    if (a->lang && strcmp(a->lang, p->lang))
        return 0;
    if (a->only && !in_list(a->only, i))
        return 0;
    if (!a->limit)
        return 1;
    for (int i = 0; i < nt; i++)
        if (!strcmp(t[i].lang, p->lang))
            return t[i].n < a->limit;
    return 1;
}

static void print_table(const tally *t, int nt)
{
    printf("\naccuracy      colour  background  motion  shape   all\n");
    tally sum = { .lang = "all" };
    for (int i = 0; i <= nt; i++) {
        const tally *x = i < nt ? &t[i] : &sum;
        if (i == nt && nt < 2)
            break;
        char line[256], label[32];
        snprintf(label, sizeof label, "%s (%d)", x->lang, x->n);
        int len = snprintf(line, sizeof line, "%-13s", label);
        for (int j = 0; j < N_ATTR; j++)
            len += snprintf(line + len, sizeof line - (size_t)len, " %-7.3f%s", x->n ? (double)x->ok[j] / x->n : 0.0,
                            j == A_BACKGROUND ? "    " : "");
        while (len && line[len - 1] == ' ')
            line[--len] = 0;
        printf("%s\n", line);
        if (i < nt) {
            sum.n += x->n;
            for (int j = 0; j < N_ATTR; j++)
                sum.ok[j] += x->ok[j];
        }
    }
}

typedef struct eval_run {
    tally t[8];
    int nt;
    uint8_t *strip;
    size_t strip_row_bytes; /* capacity of one row */
    int strip_rows, strip_f, strip_h, strip_w;
} eval_run;

/* Reads DIR/NNN.safetensors (`frames` U8 [F, H, W, 3], as --save writes) into t. */
static int read_frames(const char *dir, int i, wan_host_tensor *t, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%03d.safetensors", dir, i);
    if (wan_safetensors_read(path, "frames", WAN_DTYPE_U8, t, err, errlen) != WAN_OK)
        return 0;
    if (t->ndim != 4 || t->shape[3] != 3 || t->shape[0] < 1 || t->shape[0] > 256 || t->shape[1] < 5 ||
        t->shape[2] < 5) {
        snprintf(err, errlen, "%.1000s: `frames` is not [F <= 256, H >= 5, W >= 5, 3]", path);
        wan_host_tensor_free(t);
        return 0;
    }
    return 1;
}

/* Counts one prompt's result and prints its line. */
static void score(const eval_args *a, const eval_list *l, int i, const uint8_t *frames, int F, int H, int W,
                  tally *t)
{
    const eval_prompt *p = &l->prompts[i];
    probe_result r;
    probe_video(l, frames, F, H, W, &r);
    const char *got[4] = { r.shape, r.colour, r.background, r.motion };
    int ok[4], all = 1;
    for (int j = 0; j < 4; j++)
        all &= ok[j] = got[j] && !strcmp(got[j], p->want[j]);
    t->n++;
    t->ok[A_COLOUR] += ok[1];
    t->ok[A_BACKGROUND] += ok[2];
    t->ok[A_MOTION] += ok[3];
    t->ok[A_SHAPE] += ok[0];
    t->ok[A_ALL] += all;
    if (!a->quiet)
        printf("%3d %s seed %-4llu %s %s %s %s  %s -> %s %s on %s, %s\n", i, p->lang, (unsigned long long)p->seed,
               ok[1] ? "C" : "c", ok[2] ? "B" : "b", ok[3] ? "M" : "m", ok[0] ? "S" : "s", p->text,
               got[1] ? got[1] : "?", got[0] ? got[0] : "?", got[2] ? got[2] : "?", got[3] ? got[3] : "?");
    fflush(stdout);
}

/* Generates (or, with --probe-only, reads) and scores prompt i; returns 0 on success, else the exit code. */
static int eval_one(const eval_args *a, const eval_list *l, int i, wan_ctx_t *ctx, wan_generate_params base,
                    eval_run *run)
{
    const eval_prompt *p = &l->prompts[i];
    tally *t = tally_for(run->t, &run->nt, 8, p->lang);
    if (!t) {
        fprintf(stderr, "wan eval: more than 8 languages\n");
        return 1;
    }
    wan_video v = { 0 };
    wan_host_tensor ft = { 0 };
    char err[2048];
    if (a->probe_only) {
        if (!read_frames(a->probe_only, i, &ft, err, sizeof err)) {
            fprintf(stderr, "wan eval: %s\n", err);
            return 1;
        }
        v.frames = ft.data;
        v.num_frames = (int)ft.shape[0], v.height = (int)ft.shape[1], v.width = (int)ft.shape[2], v.fps = 16;
    } else {
        wan_generate_params gp = base;
        gp.prompt = p->text;
        gp.seed = p->seed;
        wan_status rc = wan_generate(ctx, &gp, &v);
        if (rc != WAN_OK) {
            fprintf(stderr, "wan eval: prompt %d (%s): %s\n", i, p->text, wan_ctx_errmsg(ctx));
            return cli_exit_code(rc);
        }
    }
    int code = 0;
    if (a->save) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%03d.safetensors", a->save, i);
        if (wan_video_write(path, v.frames, v.num_frames, v.height, v.width, v.fps, NULL, err, sizeof err)) {
            fprintf(stderr, "wan eval: %s\n", err);
            code = 1;
        }
    }
    size_t bytes = (size_t)v.num_frames * v.height * v.width * 3;
    if (!code && run->strip && run->strip_rows < 6 && bytes <= run->strip_row_bytes &&
        (!run->strip_rows ||
         (run->strip_f == v.num_frames && run->strip_h == v.height && run->strip_w == v.width))) {
        run->strip_f = v.num_frames, run->strip_h = v.height, run->strip_w = v.width;
        memcpy(run->strip + run->strip_rows * run->strip_row_bytes, v.frames, bytes);
        run->strip_rows++;
    }
    if (!code)
        score(a, l, i, v.frames, v.num_frames, v.height, v.width, t);
    if (a->probe_only)
        wan_host_tensor_free(&ft);
    else
        wan_video_free(&v);
    return code;
}

static int run_eval(const eval_args *a, const eval_list *l, wan_model_t *m)
{
    char err[2048];
    wan_ctx_t *ctx = NULL;
    if (wan_ctx_new(m, &ctx, err, sizeof err) != WAN_OK) {
        fprintf(stderr, "wan eval: %s\n", err);
        return 1;
    }
    wan_generate_params gp = wan_generate_default_params(m);
    gp.negative_prompt = "";
    gp.width = a->width ? a->width : l->width;
    gp.height = a->height ? a->height : l->height;
    gp.num_frames = a->frames ? a->frames : l->frames;
    gp.steps = a->steps ? a->steps : l->steps;
    gp.guidance_scale = a->cfg >= 0 ? a->cfg : l->cfg;
    gp.guidance_scale_2 = a->cfg2 >= 0 ? a->cfg2 : l->cfg2;
    gp.n_threads = a->threads;
    gp.device = a->device;
    eval_run run = { .nt = 0 };
    run.strip_row_bytes = (size_t)gp.num_frames * gp.height * gp.width * 3;
    if (a->strip && !(run.strip = malloc(6 * run.strip_row_bytes))) {
        fprintf(stderr, "wan eval: out of memory\n");
        wan_ctx_free(ctx);
        return 1;
    }
    printf("wan eval: %s, %dx%d, %d frames, %d steps, CFG %g/%g, empty negative prompt\n", a->prompts, gp.width,
           gp.height, gp.num_frames, gp.steps, gp.guidance_scale, gp.guidance_scale_2);
    int code = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < l->n && !code; i++) {
        if (!is_selected(a, i, &l->prompts[i], run.t, run.nt))
            continue;
        code = eval_one(a, l, i, ctx, gp, &run);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!code && a->strip && run.strip_rows &&
        !write_strip(a->strip, run.strip, run.strip_row_bytes, run.strip_rows, run.strip_f, run.strip_h, run.strip_w, err, sizeof err)) {
        fprintf(stderr, "wan eval: %s\n", err);
        code = 1;
    }
    if (!code) {
        int n = 0;
        for (int i = 0; i < run.nt; i++)
            n += run.t[i].n;
        print_table(run.t, run.nt);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("%d videos in %.1f s (%.2f s each)\n", n, s, n ? s / n : 0.0);
        for (int k = 0; k < a->n_mins; k++)
            for (int i = 0; i < run.nt; i++) {
                double acc = run.t[i].n ? (double)run.t[i].ok[a->min_attr[k]] / run.t[i].n : 0.0;
                if (acc < a->min_value[k]) {
                    printf("FAIL: %s accuracy %.3f < %.3f (%s)\n", k_attr[a->min_attr[k]], acc, a->min_value[k],
                           run.t[i].lang);
                    code = 1;
                }
            }
    }
    free(run.strip);
    wan_ctx_free(ctx);
    return code;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a = { .cfg = -1, .cfg2 = -1 };
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    char def[4096], err[2048];
    if (!a.prompts) {
        snprintf(def, sizeof def, "%s/eval_prompts.tsv", a.model);
        a.prompts = def;
    }
    if (a.save && mkdir(a.save, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "wan eval: cannot create %s: %s\n", a.save, strerror(errno));
        return 1;
    }
    eval_list l = { .width = 64, .height = 64, .frames = 9, .steps = 20, .cfg = 5.0, .cfg2 = 5.0 };
    if (!list_load(a.prompts, &l, err, sizeof err)) {
        fprintf(stderr, "wan eval: %s\n", err);
        return 2;
    }
    wan_model_t *m = NULL;
    wan_status st = wan_model_load(a.model, NULL, &m, err, sizeof err);
    if (st != WAN_OK) {
        fprintf(stderr, "wan eval: %s\n", err);
        list_free(&l);
        return cli_exit_code(st);
    }
    int code = run_eval(&a, &l, m);
    wan_model_free(m);
    list_free(&l);
    return code;
}
