/*
 * Noise_IK_25519_ChaChaPoly_SHA256, written against the Noise Protocol Framework (revision 34):
 * symmetric state (h, ck, k, n), MixHash, MixKey, EncryptAndHash, DecryptAndHash and Split, and
 * the two messages of the IK pattern. The token each line performs is named in its comment.
 */
#include "core/noise.h"

#include <sodium.h>
#include <string.h>

#include "core/wire.h"
#include "tern/errors.h"

static const char PROTOCOL_NAME[] = "Noise_IK_25519_ChaChaPoly_SHA256"; /* exactly 32 bytes */

static void mix_hash(tern__noise *st, const uint8_t *data, size_t len)
{
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    crypto_hash_sha256_update(&hs, st->h, sizeof(st->h));
    if (len) crypto_hash_sha256_update(&hs, data, len);
    crypto_hash_sha256_final(&hs, st->h);
}

static void mix_key(tern__noise *st, const uint8_t *ikm, size_t len)
{
    uint8_t ck[TERN__HASH_LEN], k[TERN__HASH_LEN];
    tern__hkdf2(ck, k, st->ck, ikm, len);
    memcpy(st->ck, ck, sizeof(ck));
    memcpy(st->k, k, sizeof(st->k));
    st->n = 0;
    st->has_k = 1;
    sodium_memzero(ck, sizeof(ck));
    sodium_memzero(k, sizeof(k));
}

static void noise_nonce(uint8_t nonce[12], uint64_t n)
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(n >> (8 * i)); /* little-endian */
}

/* EncryptAndHash: out receives len + 16 bytes. */
static int encrypt_and_hash(tern__noise *st, const uint8_t *pt, size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    unsigned long long cl = 0;
    noise_nonce(nonce, st->n);
    if (crypto_aead_chacha20poly1305_ietf_encrypt(out, &cl, pt, len, st->h, sizeof(st->h), NULL,
                                                  nonce, st->k) != 0)
        return TERN_ERR_CRYPTO;
    st->n++;
    mix_hash(st, out, (size_t)cl);
    return TERN_OK;
}

static int decrypt_and_hash(tern__noise *st, const uint8_t *ct, size_t len, uint8_t *out)
{
    uint8_t nonce[12];
    unsigned long long pl = 0;
    if (len < TERN__AEAD_TAG_LEN) return TERN_ERR_TRUNCATED;
    noise_nonce(nonce, st->n);
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &pl, NULL, ct, len, st->h, sizeof(st->h),
                                                  nonce, st->k) != 0)
        return TERN_ERR_AUTH;
    st->n++;
    mix_hash(st, ct, len);
    return TERN_OK;
}

/* DH and MixKey in one; a low-order point (all-zero result) fails authentication. */
static int mix_dh(tern__noise *st, const uint8_t priv[32], const uint8_t pub[32])
{
    uint8_t shared[32];
    if (crypto_scalarmult(shared, priv, pub) != 0) {
        sodium_memzero(shared, sizeof(shared));
        return TERN_ERR_AUTH;
    }
    mix_key(st, shared, sizeof(shared));
    sodium_memzero(shared, sizeof(shared));
    return TERN_OK;
}

void tern__noise_init(tern__noise *st, const uint8_t *prologue, size_t prologue_len,
                      const uint8_t responder_static[32])
{
    memset(st, 0, sizeof(*st));
    memcpy(st->h, PROTOCOL_NAME, TERN__HASH_LEN); /* name is HASHLEN bytes: h = name */
    memcpy(st->ck, st->h, TERN__HASH_LEN);
    mix_hash(st, prologue, prologue_len);
    memcpy(st->rs, responder_static, 32);
    mix_hash(st, responder_static, 32); /* pre-message: <- s */
}

void tern__noise_wipe(tern__noise *st)
{
    sodium_memzero(st, sizeof(*st));
}

int tern__noise_write_msg1(tern__noise *st, const tern_keypair *s, const uint8_t e_priv[32],
                           const uint8_t *payload, size_t payload_len, uint8_t *out, size_t out_len)
{
    const uint8_t *rs_pub = st->rs; /* set by the caller via noise_init's pre-message copy */
    if (out_len < TERN__NOISE_MSG1_FIXED + payload_len) return TERN_ERR_BUFFER;
    uint8_t *p = out;
    /* e */
    memcpy(st->e_priv, e_priv, 32);
    if (crypto_scalarmult_base(st->e_pub, st->e_priv) != 0) return TERN_ERR_CRYPTO;
    memcpy(p, st->e_pub, 32);
    mix_hash(st, st->e_pub, 32);
    p += 32;
    /* es */
    if (mix_dh(st, st->e_priv, rs_pub) != TERN_OK) return TERN_ERR_AUTH;
    /* s */
    if (encrypt_and_hash(st, s->pub, 32, p) != TERN_OK) return TERN_ERR_CRYPTO;
    p += 32 + TERN__AEAD_TAG_LEN;
    /* ss */
    if (mix_dh(st, s->priv, rs_pub) != TERN_OK) return TERN_ERR_AUTH;
    /* payload */
    if (encrypt_and_hash(st, payload, payload_len, p) != TERN_OK) return TERN_ERR_CRYPTO;
    p += payload_len + TERN__AEAD_TAG_LEN;
    return (int)(p - out);
}

int tern__noise_read_msg1(tern__noise *st, const tern_keypair *s, const uint8_t *msg, size_t msg_len,
                          uint8_t *payload_out, size_t payload_cap, size_t *payload_len)
{
    if (msg_len < TERN__NOISE_MSG1_FIXED) return TERN_ERR_TRUNCATED;
    size_t pl = msg_len - TERN__NOISE_MSG1_FIXED;
    if (pl > payload_cap) return TERN_ERR_TOO_LARGE;
    const uint8_t *p = msg;
    /* e */
    memcpy(st->re, p, 32);
    mix_hash(st, st->re, 32);
    p += 32;
    /* es (responder side: DH(s, re)) */
    if (mix_dh(st, s->priv, st->re) != TERN_OK) return TERN_ERR_AUTH;
    /* s */
    if (decrypt_and_hash(st, p, 32 + TERN__AEAD_TAG_LEN, st->rs) != TERN_OK) return TERN_ERR_AUTH;
    p += 32 + TERN__AEAD_TAG_LEN;
    /* ss */
    if (mix_dh(st, s->priv, st->rs) != TERN_OK) return TERN_ERR_AUTH;
    /* payload */
    if (decrypt_and_hash(st, p, pl + TERN__AEAD_TAG_LEN, payload_out) != TERN_OK)
        return TERN_ERR_AUTH;
    *payload_len = pl;
    return TERN_OK;
}

int tern__noise_write_msg2(tern__noise *st, const uint8_t e_priv[32], const uint8_t *payload,
                           size_t payload_len, uint8_t *out, size_t out_len)
{
    if (out_len < TERN__NOISE_MSG2_FIXED + payload_len) return TERN_ERR_BUFFER;
    uint8_t *p = out;
    /* e */
    memcpy(st->e_priv, e_priv, 32);
    if (crypto_scalarmult_base(st->e_pub, st->e_priv) != 0) return TERN_ERR_CRYPTO;
    memcpy(p, st->e_pub, 32);
    mix_hash(st, st->e_pub, 32);
    p += 32;
    /* ee */
    if (mix_dh(st, st->e_priv, st->re) != TERN_OK) return TERN_ERR_AUTH;
    /* se (responder side: DH(e, rs)) */
    if (mix_dh(st, st->e_priv, st->rs) != TERN_OK) return TERN_ERR_AUTH;
    /* payload */
    if (encrypt_and_hash(st, payload, payload_len, p) != TERN_OK) return TERN_ERR_CRYPTO;
    p += payload_len + TERN__AEAD_TAG_LEN;
    return (int)(p - out);
}

int tern__noise_read_msg2(tern__noise *st, const tern_keypair *s, const uint8_t *msg,
                          size_t msg_len, uint8_t *payload_out, size_t payload_cap,
                          size_t *payload_len)
{
    if (msg_len < TERN__NOISE_MSG2_FIXED) return TERN_ERR_TRUNCATED;
    size_t pl = msg_len - TERN__NOISE_MSG2_FIXED;
    if (pl > payload_cap) return TERN_ERR_TOO_LARGE;
    /* Work on a copy so a forged message 2 leaves the state ready for the genuine one. */
    tern__noise t = *st;
    const uint8_t *p = msg;
    int rc = TERN_ERR_AUTH;
    /* e */
    memcpy(t.re, p, 32);
    mix_hash(&t, t.re, 32);
    p += 32;
    /* ee */
    if (mix_dh(&t, t.e_priv, t.re) != TERN_OK) goto out;
    /* se (initiator side: DH(s, re)) */
    if (mix_dh(&t, s->priv, t.re) != TERN_OK) goto out;
    /* payload */
    if (decrypt_and_hash(&t, p, pl + TERN__AEAD_TAG_LEN, payload_out) != TERN_OK) goto out;
    *payload_len = pl;
    *st = t;
    rc = TERN_OK;
out:
    sodium_memzero(&t, sizeof(t));
    return rc;
}

void tern__noise_split(tern__noise *st, uint8_t i2r[32], uint8_t r2i[32])
{
    tern__hkdf2(i2r, r2i, st->ck, NULL, 0);
    tern__noise_wipe(st);
}
