/* fuzz_common.h — shared by the fuzz targets of the weight-file readers. */
#ifndef WAN_FUZZ_COMMON_H
#define WAN_FUZZ_COMMON_H

#include "safetensors.h"

/* Touches the first and last byte of every tensor view (a bad range then shows up under ASan), looks
 * every name up again, and frees the parsed file. */
static inline void fuzz_check_views(wan_st_file *f)
{
    volatile uint8_t sink = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const wan_st_tensor *t = &f->tensors[i];
        if (t->end > t->begin)
            sink ^= t->data[0] ^ t->data[t->end - t->begin - 1];
        (void)wan_st_find(f, t->name);
    }
    (void)sink;
    wan_st_file_clear(f);
}

#endif
