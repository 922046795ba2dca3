/* pth.h — PyTorch .pth state dicts (torch.save zip archives) read without executing anything (internal).
 *
 * A torch.save file is a zip archive of stored (uncompressed) entries: `<prefix>/data.pkl`, a pickle of
 * the state dict, and one entry `<prefix>/data/<key>` per storage holding its raw little-endian bytes.
 * The reader interprets only the pickle subset torch writes for a dict of tensors (protocols 2-5:
 * containers, numbers, strings, the memo, storages through BINPERSID) and only these globals:
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _v3, torch._utils._rebuild_parameter(_with_state),
 * torch.<Type>Storage, torch.storage.UntypedStorage and the torch dtypes _rebuild_tensor_v3 names. Any other
 * opcode or global is rejected with its byte offset or name: nothing is imported or called. Tensors must be
 * contiguous; their views point into the caller's buffer (zero-copy: stored zip entries are contiguous). */
#ifndef WAN_PTH_H
#define WAN_PTH_H

#include "safetensors.h"

/* True when buf starts with a zip local-file header ("PK\3\4"), as every torch.save file since torch 1.6. */
bool wan_pth_is_zip(const uint8_t *buf, size_t size);

/* True when buf starts like the legacy (torch < 1.6, non-zip) torch.save format: a protocol-2 pickle of
 * torch's magic number 0x1950a86a20f9469cfc6c, which this reader does not handle. */
bool wan_pth_is_legacy(const uint8_t *buf, size_t size);

/* Parses a torch.save archive held in memory (`buf`, `size` bytes: the whole file) into *out, as
 * wan_st_parse does for safetensors: one wan_st_tensor per state-dict entry whose value is a tensor,
 * sorted by name, with `data` pointing into buf and begin/end the tensor's byte range in the file
 * (header_len is 0). A dict that holds no tensor itself but a "state_dict", "model" or "module" dict of
 * tensors is read through that entry. Non-tensor values are skipped. `path` is only used in messages.
 * On success the caller frees *out with wan_st_file_clear; on failure *out is left empty and err says
 * what is wrong and where (zip entry and file offset, pickle byte offset and opcode, global name, tensor
 * name). Errors: WAN_ERR_FORMAT (malformed or truncated archive or pickle, storage out of range),
 * WAN_ERR_UNSUPPORTED (compressed or encrypted entries, big-endian archives, non-contiguous tensors,
 * opcodes or globals outside the allow-list), WAN_ERR_NOMEM. Thread-safe. */
wan_status wan_pth_parse(const char *path, const uint8_t *buf, size_t size, wan_st_file *out, wan_error *err);

#endif /* WAN_PTH_H */
