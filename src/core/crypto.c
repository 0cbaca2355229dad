/*
 * Packet protection (AES-256-GCM / ChaCha20-Poly1305 via libsodium), HMAC-SHA256, Noise's HKDF,
 * and a keyed BLAKE2b MAC. See crypto.h for the nonce and integrity-only rules.
 */
#include "core/crypto.h"

#include <string.h>

#include "core/wire.h"
#include "tern/errors.h"

int tern__crypto_init(void)
{
    return sodium_init() < 0 ? TERN_ERR_CRYPTO : TERN_OK;
}

int tern__aes_available(void)
{
    return crypto_aead_aes256gcm_is_available();
}

void tern__hmac_sha256(uint8_t out[TERN__HASH_LEN], const uint8_t *key, size_t key_len,
                       const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    if (a_len) crypto_auth_hmacsha256_update(&st, a, a_len);
    if (b_len) crypto_auth_hmacsha256_update(&st, b, b_len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

void tern__hkdf2(uint8_t o1[TERN__HASH_LEN], uint8_t o2[TERN__HASH_LEN],
                 const uint8_t ck[TERN__HASH_LEN], const uint8_t *ikm, size_t ikm_len)
{
    uint8_t temp[TERN__HASH_LEN], t1[TERN__HASH_LEN];
    static const uint8_t one = 1, two = 2;
    tern__hmac_sha256(temp, ck, TERN__HASH_LEN, ikm, ikm_len, NULL, 0);
    tern__hmac_sha256(t1, temp, sizeof(temp), &one, 1, NULL, 0);
    if (o2 != NULL) tern__hmac_sha256(o2, temp, sizeof(temp), t1, sizeof(t1), &two, 1);
    memcpy(o1, t1, TERN__HASH_LEN);
    sodium_memzero(temp, sizeof(temp));
    sodium_memzero(t1, sizeof(t1));
}

int tern__aead_init(tern__aead *a, int alg, const uint8_t secret[32])
{
    static const uint8_t label[] = "tern v1 traffic";
    uint8_t iv[TERN__HASH_LEN];
    memset(a, 0, sizeof(*a));
    a->alg = alg;
    memcpy(a->secret, secret, 32);
    tern__hkdf2(a->key, iv, secret, label, sizeof(label) - 1);
    memcpy(a->iv, iv, TERN__IV_LEN);
    sodium_memzero(iv, sizeof(iv));
    if (alg == TERN__WIRE_AES256GCM) {
        if (!tern__aes_available()) return TERN_ERR_CRYPTO;
        if (crypto_aead_aes256gcm_beforenm(&a->aes, a->key) != 0) return TERN_ERR_CRYPTO;
    } else if (alg != TERN__WIRE_CHACHA20POLY1305) {
        return TERN_ERR_INVALID_ARG;
    }
    return TERN_OK;
}

int tern__aead_next(tern__aead *next, const tern__aead *cur)
{
    static const uint8_t label[] = "tern v1 key update";
    uint8_t s1[TERN__HASH_LEN], s2[TERN__HASH_LEN];
    tern__hkdf2(s1, s2, cur->secret, label, sizeof(label) - 1);
    int rc = tern__aead_init(next, cur->alg, s1);
    sodium_memzero(s1, sizeof(s1));
    sodium_memzero(s2, sizeof(s2));
    return rc;
}

void tern__aead_wipe(tern__aead *a)
{
    sodium_memzero(a, sizeof(*a));
}

static void make_nonce(uint8_t nonce[TERN__IV_LEN], const uint8_t iv[TERN__IV_LEN], uint64_t pn)
{
    memcpy(nonce, iv, TERN__IV_LEN);
    for (int i = 0; i < 8; i++) nonce[TERN__IV_LEN - 1 - i] ^= (uint8_t)(pn >> (8 * i));
}

int tern__aead_seal(const tern__aead *a, uint64_t pn, int integrity_only, const uint8_t *ad,
                    size_t ad_len, const uint8_t *pt, size_t pt_len, uint8_t *out)
{
    uint8_t nonce[TERN__IV_LEN];
    make_nonce(nonce, a->iv, pn);
    if (integrity_only) {
        /* The tag authenticates header and frames; the frames stay readable. */
        uint8_t tag[TERN__AEAD_TAG_LEN];
        unsigned long long tl = 0;
        if (out != pt) memmove(out, pt, pt_len);
        /* AD = header || frames: feed both through a two-part AD by building it contiguously.
         * The caller lays header and frames out back to back, so ad+ad_len == pt here. */
        if (ad + ad_len != out) return TERN_ERR_INVALID_ARG;
        int rc = a->alg == TERN__WIRE_AES256GCM
                     ? crypto_aead_aes256gcm_encrypt_detached_afternm(
                           out, tag, &tl, out, 0, ad, ad_len + pt_len, NULL, nonce, &a->aes)
                     : crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                           out, tag, &tl, out, 0, ad, ad_len + pt_len, NULL, nonce, a->key);
        if (rc != 0) return TERN_ERR_CRYPTO;
        memcpy(out + pt_len, tag, sizeof(tag));
        return TERN_OK;
    }
    unsigned long long cl = 0;
    int rc = a->alg == TERN__WIRE_AES256GCM
                 ? crypto_aead_aes256gcm_encrypt_afternm(out, &cl, pt, pt_len, ad, ad_len, NULL,
                                                         nonce, &a->aes)
                 : crypto_aead_chacha20poly1305_ietf_encrypt(out, &cl, pt, pt_len, ad, ad_len,
                                                             NULL, nonce, a->key);
    return rc == 0 ? TERN_OK : TERN_ERR_CRYPTO;
}

int tern__aead_open(const tern__aead *a, uint64_t pn, int integrity_only, const uint8_t *ad,
                    size_t ad_len, const uint8_t *ct, size_t ct_len, uint8_t *out)
{
    uint8_t nonce[TERN__IV_LEN];
    if (ct_len < TERN__AEAD_TAG_LEN) return TERN_ERR_AUTH;
    make_nonce(nonce, a->iv, pn);
    size_t pt_len = ct_len - TERN__AEAD_TAG_LEN;
    if (integrity_only) {
        if (ad + ad_len != ct) return TERN_ERR_INVALID_ARG;
        int rc = a->alg == TERN__WIRE_AES256GCM
                     ? crypto_aead_aes256gcm_decrypt_detached_afternm(
                           out, NULL, ct, 0, ct + pt_len, ad, ad_len + pt_len, nonce, &a->aes)
                     : crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                           out, NULL, ct, 0, ct + pt_len, ad, ad_len + pt_len, nonce, a->key);
        if (rc != 0) return TERN_ERR_AUTH;
        if (out != ct) memmove(out, ct, pt_len);
        return TERN_OK;
    }
    unsigned long long pl = 0;
    int rc = a->alg == TERN__WIRE_AES256GCM
                 ? crypto_aead_aes256gcm_decrypt_afternm(out, &pl, NULL, ct, ct_len, ad, ad_len,
                                                         nonce, &a->aes)
                 : crypto_aead_chacha20poly1305_ietf_decrypt(out, &pl, NULL, ct, ct_len, ad,
                                                             ad_len, nonce, a->key);
    return rc == 0 ? TERN_OK : TERN_ERR_AUTH;
}

void tern__mac16(uint8_t out[16], const uint8_t key[32], const uint8_t *a, size_t a_len,
                 const uint8_t *b, size_t b_len)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, 32, 16);
    if (a_len) crypto_generichash_update(&st, a, a_len);
    if (b_len) crypto_generichash_update(&st, b, b_len);
    crypto_generichash_final(&st, out, 16);
}
