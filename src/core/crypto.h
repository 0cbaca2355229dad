/*
 * Packet protection and the key-derivation primitives under it (libsodium).
 *
 * Each direction of a connection has its own AEAD key and 12-byte IV; a packet's nonce is the IV
 * XOR its 64-bit packet number (right-aligned), so nonces never repeat. AES-256-GCM runs only
 * where libsodium reports hardware support; ChaCha20-Poly1305 (IETF) everywhere. In
 * integrity-only mode the frames travel in the clear and the AEAD tag covers header and frames.
 */
#ifndef TERN_CORE_CRYPTO_H
#define TERN_CORE_CRYPTO_H

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>

#define TERN__HASH_LEN 32
#define TERN__IV_LEN 12

typedef struct tern__aead {
    crypto_aead_aes256gcm_state aes; /* precomputed AES key schedule (16-byte aligned) */
    uint8_t key[32];
    uint8_t iv[TERN__IV_LEN];
    uint8_t secret[32]; /* the traffic secret the key came from (for key updates) */
    int alg;            /* TERN__WIRE_* */
} tern__aead;

/* sodium_init once; 0 or TERN_ERR_CRYPTO. */
int tern__crypto_init(void);
/* Non-zero when this CPU runs AES-256-GCM in hardware. */
int tern__aes_available(void);

void tern__hmac_sha256(uint8_t out[TERN__HASH_LEN], const uint8_t *key, size_t key_len,
                       const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);
/* Noise's HKDF: two outputs from chaining key ck and input key material ikm. */
void tern__hkdf2(uint8_t o1[TERN__HASH_LEN], uint8_t o2[TERN__HASH_LEN],
                 const uint8_t ck[TERN__HASH_LEN], const uint8_t *ikm, size_t ikm_len);

/* Sets up a direction's AEAD from a 32-byte traffic secret. Errors: TERN_ERR_CRYPTO. */
int tern__aead_init(tern__aead *a, int alg, const uint8_t secret[32]);
void tern__aead_wipe(tern__aead *a);
/* The direction's next key (key update): from secret' = first output of
 * HKDF(secret, "tern v1 key update"). Errors: as tern__aead_init. */
int tern__aead_next(tern__aead *next, const tern__aead *cur);

/* Encrypts pt (pt_len bytes) in place-compatible fashion into out (pt_len + 16 bytes), with ad.
 * With integrity_only, out receives pt unchanged followed by a tag over ad||pt. */
int tern__aead_seal(const tern__aead *a, uint64_t pn, int integrity_only, const uint8_t *ad,
                    size_t ad_len, const uint8_t *pt, size_t pt_len, uint8_t *out);
/* Verifies and decrypts ct (ct_len >= 16) into out (ct_len - 16 bytes). TERN_ERR_AUTH on
 * failure (out is then undefined). */
int tern__aead_open(const tern__aead *a, uint64_t pn, int integrity_only, const uint8_t *ad,
                    size_t ad_len, const uint8_t *ct, size_t ct_len, uint8_t *out);

/* Keyed BLAKE2b with a 16-byte output (mac1, retry tokens). */
void tern__mac16(uint8_t out[16], const uint8_t key[32], const uint8_t *a, size_t a_len,
                 const uint8_t *b, size_t b_len);

#endif
