/* fuzz_pth.c — libFuzzer target for the torch.save (.pth) reader: the zip container and the restricted
 * unpickler, from a memory buffer. */
#include "core.h"
#include "pth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wan_st_file f;
    wan_error err;
    if (wan_pth_parse("fuzz.pth", data, size, &f, &err) == WAN_OK) {
        /* touch the first and last byte of every tensor view so that a bad range shows up under ASan */
        volatile uint8_t sink = 0;
        for (int i = 0; i < f.n_tensors; i++) {
            const wan_st_tensor *t = &f.tensors[i];
            if (t->end > t->begin)
                sink ^= t->data[0] ^ t->data[t->end - t->begin - 1];
            (void)wan_st_find(&f, t->name);
        }
        (void)sink;
        wan_st_file_clear(&f);
    }
    return 0;
}
