/* Long-term X25519 keys, peer IDs (BLAKE2b-256 of the public key) and hex encoding. */
#include <sodium.h>
#include <string.h>

#include "tern/tern.h"

int tern_keypair_generate(tern_keypair *kp)
{
    if (sodium_init() < 0) return TERN_ERR_CRYPTO;
    randombytes_buf(kp->priv, sizeof(kp->priv));
    return tern_keypair_from_private(kp, kp->priv);
}

int tern_keypair_from_private(tern_keypair *kp, const uint8_t priv[TERN_KEY_LEN])
{
    if (sodium_init() < 0) return TERN_ERR_CRYPTO;
    if (kp->priv != priv) memcpy(kp->priv, priv, TERN_KEY_LEN);
    /* RFC 7748 clamping, so the stored key is the one actually used */
    kp->priv[0] &= 248;
    kp->priv[31] &= 127;
    kp->priv[31] |= 64;
    if (crypto_scalarmult_base(kp->pub, kp->priv) != 0) return TERN_ERR_CRYPTO;
    return TERN_OK;
}

void tern_peer_id(const uint8_t pub[TERN_KEY_LEN], uint8_t id[TERN_PEER_ID_LEN])
{
    static const uint8_t label[] = "tern peer id v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, TERN_PEER_ID_LEN);
    crypto_generichash_update(&st, label, sizeof(label) - 1);
    crypto_generichash_update(&st, pub, TERN_KEY_LEN);
    crypto_generichash_final(&st, id, TERN_PEER_ID_LEN);
}

void tern_keypair_wipe(tern_keypair *kp)
{
    sodium_memzero(kp, sizeof(*kp));
}

void tern_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int tern_hex_decode(const char *in, uint8_t *out, size_t len)
{
    if (in == NULL || strlen(in) != 2 * len) return TERN_ERR_MALFORMED;
    for (size_t i = 0; i < len; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0) return TERN_ERR_MALFORMED;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return TERN_OK;
}
