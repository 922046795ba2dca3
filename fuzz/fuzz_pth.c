/* fuzz_pth.c — libFuzzer target for the torch.save (.pth) reader: the zip container and the restricted
 * unpickler, from a memory buffer. */
#include "core.h"
#include "fuzz_common.h"
#include "pth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wan_st_file f;
    wan_error err;
    if (wan_pth_parse("fuzz.pth", data, size, &f, &err) == WAN_OK)
        fuzz_check_views(&f);
    return 0;
}
