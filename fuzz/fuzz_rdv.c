/*
 * libFuzzer target for the rendezvous codec (tern/rendezvous.h): every input is decoded; a
 * message that decodes is encoded again, and that encoding must decode to the same fields and
 * re-encode to the same bytes (the encoder's canonical TLV order makes the second encoding a
 * fixed point). The first 40 bytes are also checked as a token, which must never verify.
 */
#include <stdlib.h>
#include <string.h>

#include "tern/rendezvous.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t a[TERN_RDV_MAX_MSG], b[TERN_RDV_MAX_MSG];
    tern_rdv_msg m, m2;
    if (tern_rdv_decode(data, size, &m) == TERN_OK) {
        int n = tern_rdv_encode(&m, a, sizeof(a));
        if (n < 0) abort();
        if (tern_rdv_decode(a, (size_t)n, &m2) != TERN_OK) abort();
        if (m2.kind != m.kind || m2.n_cands != m.n_cands || m2.payload_len != m.payload_len ||
            m2.n_members != m.n_members || m2.call_id != m.call_id || m2.error != m.error)
            abort();
        int n2 = tern_rdv_encode(&m2, b, sizeof(b));
        if (n2 != n || memcmp(a, b, (size_t)n) != 0) abort();
    }
    if (size >= TERN_RDV_TOKEN_LEN) {
        static const uint8_t secret[TERN_RDV_SECRET_LEN] = {1, 2, 3};
        if (tern_rdv_token_check(secret, TERN_RDV_TOKEN_JOIN, (const uint8_t *)"g", 1, 0, data) ==
            0)
            abort();
    }
    return 0;
}
