/*
 * The tern handshake: Noise_IK_25519_ChaChaPoly_SHA256 (one round trip).
 *
 *   <- s                       (the client pins the server's long-term key)
 *   ...
 *   -> e, es, s, ss  [payload] (client hello: its identity, encrypted, and transport parameters)
 *   <- e, ee, se     [payload] (server hello: transport parameters)
 *
 * After message 2 both sides Split() into two 32-byte traffic secrets (client->server first).
 * The prologue binds the protocol version and both connection IDs of the client's Initial.
 */
#ifndef TERN_CORE_NOISE_H
#define TERN_CORE_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "core/crypto.h"
#include "tern/tern.h"

typedef struct tern__noise {
    uint8_t h[TERN__HASH_LEN];
    uint8_t ck[TERN__HASH_LEN];
    uint8_t k[32];
    uint64_t n;
    int has_k;
    uint8_t e_priv[32], e_pub[32]; /* our ephemeral */
    uint8_t re[32];                /* their ephemeral */
    uint8_t rs[32];                /* their static */
} tern__noise;

/* Starts a handshake state with the prologue; rs is the responder's static key (the pre-message). */
void tern__noise_init(tern__noise *st, const uint8_t *prologue, size_t prologue_len,
                      const uint8_t responder_static[32]);
void tern__noise_wipe(tern__noise *st);

/* Initiator: writes message 1 (TERN__NOISE_MSG1_FIXED + payload_len bytes) into out.
 * e_priv is 32 random bytes. Returns bytes written or a negative TERN_ERR_*. */
int tern__noise_write_msg1(tern__noise *st, const tern_keypair *s, const uint8_t e_priv[32],
                           const uint8_t *payload, size_t payload_len, uint8_t *out, size_t out_len);
/* Responder: reads message 1; on success fills the initiator's static key into st->rs and the
 * payload into payload_out (msg_len - TERN__NOISE_MSG1_FIXED bytes). TERN_ERR_AUTH, TERN_ERR_TRUNCATED. */
int tern__noise_read_msg1(tern__noise *st, const tern_keypair *s, const uint8_t *msg, size_t msg_len,
                          uint8_t *payload_out, size_t payload_cap, size_t *payload_len);
/* Responder: writes message 2. */
int tern__noise_write_msg2(tern__noise *st, const uint8_t e_priv[32], const uint8_t *payload,
                           size_t payload_len, uint8_t *out, size_t out_len);
/* Initiator: reads message 2. TERN_ERR_AUTH when the responder does not hold the expected keys. */
int tern__noise_read_msg2(tern__noise *st, const tern_keypair *s, const uint8_t *msg,
                          size_t msg_len, uint8_t *payload_out, size_t payload_cap,
                          size_t *payload_len);
/* Both: the two traffic secrets (initiator->responder, responder->initiator); wipes the state. */
void tern__noise_split(tern__noise *st, uint8_t i2r[32], uint8_t r2i[32]);

#endif
