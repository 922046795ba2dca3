/* test_safetensors.c — the safetensors reader: valid files, every malformed-file error, shard sets.
 * Malformed files are made here by editing the header of a valid file. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include "core.h"
#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* Builds an in-memory safetensors file from a header text and `data_len` bytes of data. */
static uint8_t *make_file(const char *header, size_t data_len, size_t *size)
{
    size_t hl = strlen(header);
    *size = 8 + hl + data_len;
    uint8_t *b = calloc(1, *size);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hl + i] = (uint8_t)i;
    return b;
}

/* Parses header+data and expects rc; the message must contain `needle`. */
static int parse_expect(const char *header, size_t data_len, wan_status want, const char *needle)
{
    size_t size;
    uint8_t *b = make_file(header, data_len, &size);
    wan_st_file f;
    wan_error err = { 0 };
    wan_status rc = wan_st_parse("mem.safetensors", b, size, &f, &err);
    free(b);
    if (rc == WAN_OK)
        wan_st_file_clear(&f);
    int ok = rc == want && (!needle || strstr(err.msg, needle));
    printf("    %-60.60s -> %s%s%s\n", header, wan_status_str(rc), rc ? ": " : "", rc ? err.msg : "");
    return ok;
}

TEST(st_valid_header)
{
    size_t size;
    uint8_t *b = make_file("{\"__metadata__\":{\"format\":\"pt\"},"
                           "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
                           "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                           "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[28,28]}}  ",
                           28, &size);
    wan_st_file f;
    wan_error err = { 0 };
    CHECK_RC(wan_st_parse("mem", b, size, &f, &err), WAN_OK, err.msg);
    CHECK(f.n_tensors == 3);
    const wan_st_tensor *t = wan_st_find(&f, "b");
    CHECK(t && t->dtype == WAN_DTYPE_BF16 && t->ndim == 2 && t->shape[1] == 3);
    CHECK(t->data == b + size - 28 + 16);
    CHECK(wan_st_find(&f, "zz") == NULL);
    wan_st_file_clear(&f);
    free(b);
}

TEST(st_every_dtype_readable)
{
    const char *names[] = { "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char h[128];
        wan_dtype d = (wan_dtype)i;
        snprintf(h, sizeof h, "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}", names[i],
                 3 * wan_dtype_size(d));
        CHECK(parse_expect(h, 3 * wan_dtype_size(d), WAN_OK, NULL));
    }
}

TEST(st_errors)
{
    /* truncated: fewer than 8 bytes */
    wan_st_file f;
    wan_error err = { 0 };
    uint8_t tiny[5] = { 1, 0, 0, 0, 0 };
    CHECK(wan_st_parse("t.safetensors", tiny, sizeof tiny, &f, &err) == WAN_ERR_FORMAT);
    CHECK(strstr(err.msg, "t.safetensors") && strstr(err.msg, "too short"));
    /* header length larger than the file */
    uint8_t big[16] = { 0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}' };
    CHECK(wan_st_parse("t.safetensors", big, sizeof big, &f, &err) == WAN_ERR_FORMAT);
    CHECK(strstr(err.msg, "header length 65535"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                       WAN_ERR_FORMAT, "run past the end of the file"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                       16, WAN_ERR_FORMAT, "overlap"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                       WAN_ERR_FORMAT, "unknown dtype 'Q4'"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}", 16,
                       WAN_ERR_FORMAT, "does not match its byte span"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]", 16,
                       WAN_ERR_FORMAT, "not valid JSON"));
    CHECK(parse_expect("[1,2]", 0, WAN_ERR_FORMAT, "not a JSON object"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}",
                       32, WAN_ERR_FORMAT, "appears twice"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16,
                       WAN_ERR_FORMAT, "shape[0]"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", 16,
                       WAN_ERR_FORMAT, "end before begin"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16, WAN_ERR_FORMAT, "data_offsets"));
    CHECK(parse_expect("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}",
                       16, WAN_ERR_FORMAT, "byte span"));
    CHECK(parse_expect("{\"__metadata__\":[1]}", 0, WAN_ERR_FORMAT, "__metadata__"));
    CHECK(parse_expect("{} x", 0, WAN_ERR_FORMAT, "after the header"));
}

/* Writes bytes to dir/name. */
static int write_bytes(const char *dir, const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static char *make_tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/wan_test_XXXXXX");
    return mkdtemp(dir);
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("    (could not remove %s)\n", dir);
}

TEST(st_open_truncated_file)
{
    char *dir = make_tmpdir();
    CHECK(dir);
    size_t size;
    uint8_t *b = make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, &size);
    CHECK(write_bytes(dir, "cut.safetensors", b, size - 5));
    free(b);
    char path[600];
    snprintf(path, sizeof path, "%s/cut.safetensors", dir);
    wan_st_file *f = NULL;
    wan_error err = { 0 };
    CHECK(wan_st_open(path, &f, &err) == WAN_ERR_FORMAT && f == NULL);
    printf("    %s\n", err.msg);
    CHECK(strstr(err.msg, "cut.safetensors") && strstr(err.msg, "'a'"));
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    CHECK(wan_st_open(path, &f, &err) == WAN_ERR_NOT_FOUND);
    rm_rf(dir);
}

TEST(st_shards_and_index)
{
    char *dir = make_tmpdir();
    CHECK(dir);
    size_t s1, s2;
    uint8_t *a = make_file("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &s1);
    uint8_t *b = make_file("{\"y\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, &s2);
    CHECK(write_bytes(dir, "model-00001-of-00002.safetensors", a, s1));
    CHECK(write_bytes(dir, "model-00002-of-00002.safetensors", b, s2));
    free(a);
    free(b);
    const char *idx = "{\"metadata\":{\"total_size\":12},\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\","
                      "\"y\":\"model-00002-of-00002.safetensors\"}}";
    CHECK(write_bytes(dir, "model.safetensors.index.json", idx, strlen(idx)));
    wan_st_set *s = NULL;
    wan_error err = { 0 };
    CHECK_RC(wan_st_set_open_dir(dir, &s, &err), WAN_OK, err.msg);
    CHECK(s->n == 2 && s->n_files == 2);
    wan_tensor t;
    CHECK_RC(wan_st_set_get(s, "y", 1, (int64_t[]){ 2 }, &t, &err), WAN_OK, err.msg);
    CHECK(t.dtype == WAN_DTYPE_F16);
    CHECK(wan_st_set_get(s, "y", 1, (int64_t[]){ 3 }, &t, &err) == WAN_ERR_SHAPE);
    printf("    %s\n", err.msg);
    CHECK(strstr(err.msg, "'y'") && strstr(err.msg, "[2]") && strstr(err.msg, "[3]"));
    CHECK(wan_st_set_get(s, "z", 1, (int64_t[]){ 2 }, &t, &err) == WAN_ERR_NOT_FOUND);
    wan_st_set_free(s);
    /* index naming a missing shard */
    const char *bad = "{\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\","
                      "\"y\":\"model-00003-of-00002.safetensors\"}}";
    CHECK(write_bytes(dir, "model.safetensors.index.json", bad, strlen(bad)));
    CHECK(wan_st_set_open_dir(dir, &s, &err) == WAN_ERR_NOT_FOUND && s == NULL);
    printf("    %s\n", err.msg);
    CHECK(strstr(err.msg, "model-00003-of-00002.safetensors") && strstr(err.msg, "'y'"));
    /* index naming a tensor its shard lacks */
    const char *bad2 = "{\"weight_map\":{\"x\":\"model-00002-of-00002.safetensors\"}}";
    CHECK(write_bytes(dir, "model.safetensors.index.json", bad2, strlen(bad2)));
    CHECK(wan_st_set_open_dir(dir, &s, &err) == WAN_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "'x'"));
    /* invalid index JSON */
    CHECK(write_bytes(dir, "model.safetensors.index.json", "{oops", 5));
    CHECK(wan_st_set_open_dir(dir, &s, &err) == WAN_ERR_FORMAT);
    CHECK(strstr(err.msg, "index.json"));
    rm_rf(dir);
}

/* Writes header + data_len bytes as a file and binds weight "w" [N, K] from it (wan_st_set_get_weight); *q8 is set
 * when it came back as a q8_0 view whose scales follow the 128 bytes of values. */
static wan_status bind_weight(const char *header, size_t data_len, int64_t N, int64_t K, int *q8, wan_error *err)
{
    char *dir = make_tmpdir(), path[600];
    size_t size;
    uint8_t *b = make_file(header, data_len, &size);
    wan_status rc = dir && write_bytes(dir, "m.safetensors", b, size) ? WAN_OK : WAN_ERR_IO;
    free(b);
    wan_st_set *s = NULL;
    *q8 = 0;
    if (rc == WAN_OK) {
        snprintf(path, sizeof path, "%s/m.safetensors", dir);
        rc = wan_st_set_open_file(path, &s, err);
    }
    if (rc == WAN_OK) {
        wan_tensor t;
        rc = wan_st_set_get_weight(s, "w", N, K, &t, err);
        *q8 = rc == WAN_OK && t.dtype == WAN_DTYPE_I8 && t.qscale &&
              (const uint8_t *)t.qscale == (const uint8_t *)t.data + 128;
        wan_st_set_free(s);
    }
    printf("    %-60.60s -> %s%s%s\n", header, wan_status_str(rc), rc ? ": " : "", rc ? err->msg : "");
    if (dir)
        rm_rf(dir);
    return rc;
}

/* q8_0 linear weights: bound with their scales; a missing, misshapen or mistyped scale tensor and rows that are not
 * whole blocks are errors naming the tensors. */
TEST(st_q8_weights)
{
    static const struct {
        const char *header;
        wan_status want;
        const char *needle;
    } cases[] = {
        { "{\"w\":{\"dtype\":\"I8\",\"shape\":[2,64],\"data_offsets\":[0,128]},"
          "\"w_scale\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[128,136]}}", WAN_OK, NULL },
        { "{\"w\":{\"dtype\":\"I8\",\"shape\":[2,64],\"data_offsets\":[0,128]}}", WAN_ERR_NOT_FOUND, "'w_scale'" },
        { "{\"w\":{\"dtype\":\"I8\",\"shape\":[2,64],\"data_offsets\":[0,128]},"
          "\"w_scale\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[128,132]}}", WAN_ERR_SHAPE, "[2, 2]" },
        { "{\"w\":{\"dtype\":\"I8\",\"shape\":[2,64],\"data_offsets\":[0,128]},"
          "\"w_scale\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[128,144]}}", WAN_ERR_SHAPE, "F32" },
        { "{\"w\":{\"dtype\":\"I8\",\"shape\":[2,48],\"data_offsets\":[0,96]}}", WAN_ERR_SHAPE, "[2, 64]" },
        { "{\"w\":{\"dtype\":\"I64\",\"shape\":[2,64],\"data_offsets\":[0,1024]}}", WAN_ERR_UNSUPPORTED, "I64" },
        { "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,64],\"data_offsets\":[0,128]},"
          "\"w_scale\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[128,136]}}", WAN_ERR_UNSUPPORTED, "2 values" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        wan_error err = { 0 };
        int q8;
        const wan_status rc = bind_weight(cases[i].header, 1024, 2, 64, &q8, &err);
        CHECK(rc == cases[i].want && (!cases[i].needle || strstr(err.msg, cases[i].needle)));
        CHECK(rc != WAN_OK || q8);
    }
    /* a row of 48 values is not whole blocks of 32 */
    wan_error err = { 0 };
    int q8;
    CHECK(bind_weight("{\"w\":{\"dtype\":\"I8\",\"shape\":[2,48],\"data_offsets\":[0,96]}}", 96, 2, 48, &q8,
                      &err) == WAN_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "'w'") && strstr(err.msg, "32"));
}

TEST(st_write_read_roundtrip)
{
    char *dir = make_tmpdir();
    CHECK(dir);
    char path[600], err[512] = "";
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    float v[6] = { 1, -2, 3.5f, 4, 5, 6 };
    uint8_t u[3] = { 7, 8, 9 };
    wan_host_tensor ts[2] = {
        { .name = "v", .dtype = WAN_DTYPE_F32, .ndim = 2, .shape = { 2, 3 }, .data = v },
        { .name = "u", .dtype = WAN_DTYPE_U8, .ndim = 1, .shape = { 3 }, .data = u },
    };
    CHECK_RC(wan_safetensors_write(path, ts, 2, err, sizeof err), WAN_OK, err);
    wan_host_tensor r;
    CHECK_RC(wan_safetensors_read(path, "v", WAN_DTYPE_F32, &r, err, sizeof err), WAN_OK, err);
    CHECK(r.ndim == 2 && r.shape[0] == 2 && memcmp(r.data, v, sizeof v) == 0);
    wan_host_tensor_free(&r);
    CHECK_RC(wan_safetensors_read(path, "u", WAN_DTYPE_I64, &r, err, sizeof err), WAN_OK, err);
    CHECK(((int64_t *)r.data)[2] == 9);
    wan_host_tensor_free(&r);
    CHECK(wan_safetensors_read(path, "u", WAN_DTYPE_F32, &r, err, sizeof err) == WAN_ERR_SHAPE);
    CHECK(wan_safetensors_read(path, "w", WAN_DTYPE_F32, &r, err, sizeof err) == WAN_ERR_NOT_FOUND);
    CHECK(strstr(err, "'w'"));
    ts[1].name[0] = 'v';
    CHECK(wan_safetensors_write(path, ts, 2, err, sizeof err) == WAN_ERR_INVALID_ARG);
    CHECK(wan_safetensors_write("/nonexistent-dir/x.safetensors", ts, 1, err, sizeof err) == WAN_ERR_IO);
    rm_rf(dir);
}

TEST(st_allocation_failures_leak_nothing)
{
    /* Every allocation of a shard-set open fails in turn: each must give NOMEM and leak nothing. */
    const char *dir = wan_test_fixture("tiny-wan22-t2v/transformer");
    size_t base = wan_mem_current();
    int failures = 0;
    for (long k = 1; k < 400; k++) {
        wan_st_set *s = NULL;
        wan_error err = { 0 };
        wan_mem_fail_after(k);
        wan_status rc = wan_st_set_open_dir(dir, &s, &err);
        wan_mem_fail_after(0);
        wan_st_set_free(s);
        CHECK_MSG(wan_mem_current() == base, "leak after failing allocation %ld", k);
        if (rc == WAN_OK)
            break;
        CHECK_MSG(rc == WAN_ERR_NOMEM, "allocation %ld: %s", k, err.msg);
        failures++;
    }
    printf("    %d injected allocation failures, all reported as out of memory, no leaks\n", failures);
    CHECK(failures > 5);
}
