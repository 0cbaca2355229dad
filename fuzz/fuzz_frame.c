/* libFuzzer target: the frame decoder (a whole payload, frame by frame) and transport params. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/ack.h"
#include "core/packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL) return 0;
    if (size) memcpy(copy, data, size);
    const uint8_t *p = copy, *end = copy + size;
    while (p != NULL && p < end) {
        tern__frame f;
        int err = 0;
        const uint8_t *next = tern__frame_decode(p, end, &f, &err);
        if (next != NULL) {
            if (next <= p || next > end) abort(); /* progress, and inside the input */
            if (f.data_len && (f.data < copy || f.data + f.data_len > end)) abort();
        } else if (err == 0) {
            abort(); /* a failure must say why */
        }
        p = next;
    }
    /* the same bytes as the body of an ACK frame: ranges must descend and stay above zero */
    tern__ack_frame af;
    int aerr = 0;
    const uint8_t *ae = tern__ack_decode(copy, end, &af, &aerr);
    if (ae != NULL) {
        if (ae > end || af.n == 0 || af.r[0].hi != af.largest) abort();
        for (size_t i = 0; i < af.n; i++) {
            if (af.r[i].lo > af.r[i].hi) abort();
            if (i > 0 && af.r[i].hi + 2 > af.r[i - 1].lo) abort();
        }
    } else if (aerr == 0) {
        abort();
    }
    tern__tparams tp;
    if (tern__tparams_decode(copy, size, &tp) == 0 && tp.n_aeads > sizeof(tp.aeads)) abort();
    free(copy);
    return 0;
}
