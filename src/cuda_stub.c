/* cuda_stub.c — the CUDA backend's constructor in a build without CUDA (the default `make`). `make cuda`
 * leaves this file out and links src/cuda/ instead, so the choice is made at link time, never by #ifdef. */
#include "backend.h"

wan_status wan_backend_cuda_create(int device, wan_backend **out, wan_error *err)
{
    (void)device;
    if (out)
        *out = NULL;
    return wan_err(err, WAN_ERR_UNSUPPORTED, "cuda backend: this build has no CUDA support (rebuild with "
                   "`make cuda`, which needs nvcc and cuBLAS)");
}
