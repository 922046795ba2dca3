/* fuzz_http.c — libFuzzer target for the request parsing of `wan serve` (tools/server/http_parse.c):
 * path routing, POST /v1/videos bodies (JSON, multipart, urlencoded; `loras` included: every accepted
 * adapter name must be a plain file name) followed by parameter resolution,
 * Range headers and bearer tokens. The first byte picks the parser; the rest is its input. */
#include "../tools/server/http_parse.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void parse_body(const char *ct, const uint8_t *body, size_t len)
{
    static const srv_limits lim = { .max_prompt = 4096, .max_frames = 121, .max_pixels = 1280 * 720,
                                    .max_steps = 100 };
    static const srv_defaults def = { .width = 832, .height = 480, .num_frames = 81, .fps = 16, .steps = 40 };
    srv_params p;
    srv_perr e;
    if (srv_params_parse(ct, body, len, &lim, &p, &e) == 0) {
        /* an accepted LoRA name always stays inside the server's folder */
        if (p.n_loras < 0 || p.n_loras > SRV_MAX_LORAS)
            abort();
        for (int i = 0; i < p.n_loras; i++)
            if (!srv_lora_name_valid(p.loras[i].name) || strchr(p.loras[i].name, '/') ||
                p.loras[i].target < SRV_LORA_HIGH || p.loras[i].target > SRV_LORA_BOTH)
                abort();
        srv_params_resolve(&p, &def, &lim, &e);
        srv_params_free(&p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* a NUL-terminated copy for the parsers that take C strings (headers, paths) */
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    switch (data[0] % 7) {
    case 0: {
        static const char *methods[] = { "GET", "POST", "DELETE", "HEAD", "PUT" };
        srv_route r;
        srv_route_parse(methods[len % 5], s, &r);
        srv_id_valid(s);
        break;
    }
    case 1:
        parse_body("application/json", body, len);
        break;
    case 2:
        parse_body("multipart/form-data; boundary=b", body, len);
        break;
    case 3: {
        /* the Content-Type itself (boundary extraction) up to the first newline, the body after it */
        char *nl = strchr(s, '\n');
        if (nl) {
            *nl = 0;
            parse_body(s, (const uint8_t *)nl + 1, strlen(nl + 1));
        } else {
            char b[80];
            srv_multipart_boundary(s, b, sizeof b);
        }
        break;
    }
    case 4:
        parse_body("application/x-www-form-urlencoded", body, len);
        break;
    case 5: {
        int64_t first, last, n = len ? (int64_t)body[0] * 1000 : 0;
        if (srv_range_parse(s, n, &first, &last) == 1 && (first < 0 || last >= n || first > last))
            abort(); /* a satisfiable range must lie inside the resource */
        break;
    }
    default:
        srv_bearer_ok(s, "sk-test-key");
        break;
    }
    free(s);
    return 0;
}
