/* fuzz_safetensors.c — libFuzzer target for the safetensors header parser and validator. */
#include "core.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wan_st_file f;
    wan_error err;
    if (wan_st_parse("fuzz.safetensors", data, size, &f, &err) == WAN_OK)
        fuzz_check_views(&f);
    return 0;
}
