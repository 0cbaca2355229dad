/* libFuzzer target: the long- and short-header decoders and packet-number reconstruction. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (copy == NULL) return 0;
    if (size) memcpy(copy, data, size);
    tern__long_hdr lh;
    if (tern__long_decode(copy, size, &lh) == 0) {
        /* every span must lie inside the input */
        if (lh.token_len && (lh.token < copy || lh.token + lh.token_len > copy + size)) abort();
        if (lh.body_len && (lh.body < copy || lh.body + lh.body_len > copy + size)) abort();
        if (lh.mac1 && lh.mac1 + 16 > copy + size) abort();
        if (lh.versions && lh.versions + 4 * lh.n_versions > copy + size) abort();
    }
    tern__short_hdr sh;
    if (tern__short_decode(copy, size, &sh) == 0) {
        if (sh.hdr_len + 17 > size) abort();
        uint64_t largest = size >= 8 ? ((uint64_t)copy[0] << 40 | (uint64_t)copy[size - 1] << 8) : 0;
        uint64_t pn = tern__pn_decode(largest, size & 1, sh.pn_truncated, sh.pn_len);
        (void)pn;
    }
    free(copy);
    return 0;
}
