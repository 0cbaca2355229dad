/*
 * libFuzzer target: forward error correction (src/core/fec.c). The input chooses a group (k
 * sources, m repair, the symbol length), its bytes and which symbols are lost: encoding then
 * decoding must give back every source exactly when at least k symbols are left, and say
 * TERN_ERR_AGAIN otherwise; whatever the bytes, nothing is read or written outside the
 * symbols. The same input's first bytes also drive the adaptive repair count, which must stay
 * within its cap. (REPAIR and REPAIRED frames with real connection state behind them are
 * fuzzed by fuzz_conn, whose corpus holds repair seeds: fuzz/corpus/conn/fec_*.)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fec.h"

#include "support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 12) return 0;
    unsigned k = 1 + data[0] % TERN__FEC_MAX_K, m = 1 + data[1] % 16;
    size_t len = 1 + ((size_t)data[2] << 8 | data[3]) % TERN__FEC_SYM_MAX;
    uint64_t lost_src, lost_rep;
    memcpy(&lost_src, data + 4, 8);
    lost_rep = data[2] * 0x0101010101010101ull;
    const uint8_t *body = data + 12;
    size_t body_len = size - 12;

    /* the adaptive repair count: any loss, burst and target (down to the live frames' cascade
     * bound, TERN__FEC_TARGET_FAIL / 101), the cap holds */
    double loss = (double)data[4] / 255.0, burst = 1.0 + (double)data[5] / 16.0;
    double target = TERN__FEC_TARGET_FAIL / (1.0 + (double)(data[7] % 101));
    unsigned cap = data[6] % 70;
    if (tern__fec_choose_m(k, cap, loss, burst, target) >
        (cap > TERN__FEC_MAX_M ? TERN__FEC_MAX_M : cap))
        fz_die("choose_m over its cap");

    uint8_t *buf = malloc((size_t)(2 * k + m) * len);
    uint8_t *scratch = malloc(tern__fec_scratch_size(k, m));
    if (buf == NULL || scratch == NULL) abort();
    uint8_t *src[TERN__FEC_MAX_K], *work[TERN__FEC_MAX_K], *rep[TERN__FEC_MAX_M];
    for (unsigned j = 0; j < k; j++) {
        src[j] = buf + (size_t)j * len;
        work[j] = buf + (size_t)(k + j) * len;
        for (size_t i = 0; i < len; i++)
            src[j][i] = body_len ? body[((size_t)j * len + i) % body_len] : (uint8_t)(j + i);
    }
    for (unsigned i = 0; i < m; i++) rep[i] = buf + (size_t)(2 * k + i) * len;
    if (tern__fec_encode(k, m, len, src, rep, scratch) != TERN_OK) fz_die("encode refused");

    uint8_t have[TERN__FEC_MAX_K], rep_have[TERN__FEC_MAX_M];
    unsigned n_have = 0;
    for (unsigned j = 0; j < k; j++) {
        have[j] = !((lost_src >> j) & 1);
        n_have += have[j];
        if (have[j]) memcpy(work[j], src[j], len);
        else memset(work[j], 0xa5, len);
    }
    for (unsigned i = 0; i < m; i++) {
        rep_have[i] = !((lost_rep >> i) & 1);
        n_have += rep_have[i];
    }
    int rc = tern__fec_decode(k, m, len, work, have, rep, rep_have, scratch);
    if (n_have >= k) {
        if (rc != TERN_OK) fz_die("decode failed with k symbols");
        for (unsigned j = 0; j < k; j++)
            if (memcmp(work[j], src[j], len) != 0) fz_die("decode rebuilt wrong bytes");
    } else if (rc != TERN_ERR_AGAIN) {
        fz_die("decode without k symbols did not say AGAIN");
    }
    free(buf);
    free(scratch);
    return 0;
}
