/* fuzz_config.c — libFuzzer target for the JSON config parsers (transformer, VAE, text encoder,
 * scheduler). The first byte picks the parser. */
#include "core.h"
#include "model_dir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *json = (const char *)data + 1;
    size_t len = size - 1;
    wan_error err;
    switch (data[0] % 4) {
    case 0: {
        wan_transformer_config c;
        char cls[64];
        wan_parse_transformer_config(json, len, "fuzz", &c, cls, sizeof cls, &err);
        break;
    }
    case 1: {
        wan_vae_config c;
        wan_parse_vae_config(json, len, "fuzz", &c, &err);
        break;
    }
    case 2: {
        wan_text_encoder_config c;
        wan_parse_text_encoder_config(json, len, "fuzz", &c, &err);
        break;
    }
    default: {
        wan_scheduler_config c;
        wan_parse_scheduler_config(json, len, "fuzz", &c, &err);
        break;
    }
    }
    return 0;
}
