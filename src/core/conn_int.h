/*
 * Calls between the files of the connection itself: conn.c (life, close, timers, API),
 * conn_rx.c (packets in), conn_tx.c (packets out) and pmtu.c (which seals its probes). The
 * other modules (flow, recovery, path, handshake) do not include this header.
 */
#ifndef TERN_CORE_CONN_INT_H
#define TERN_CORE_CONN_INT_H

#include "core/conn.h"

#define PN_LEN 4
#define SHORT_HDR_LEN (1 + TERN_CID_LEN + PN_LEN)
#define MAX_CLOSE_SENDS 8 /* CLOSE packets sent again while the peer keeps sending */

/* How a connection ends (tern__conn_close_as): at once and without a word, by sending CLOSE
 * (CLOSING for 3 PTO), or by draining after the peer's CLOSE or a stateless reset. */
enum { TERM_SILENT, TERM_SEND_CLOSE, TERM_DRAIN };

/* conn.c: ends the connection with err for the application and (space, code, reason) for the
 * peer; nothing when it is already closing. */
void tern__conn_close_as(tern_conn *c, uint64_t now, int err, uint64_t space, uint64_t code,
                         const uint8_t *reason, size_t reason_len, int mode);

/* conn_tx.c: seals frames into one short-header packet in out (0 when it does not fit);
 * *pn_out, when not NULL, gets its packet number. */
int tern__conn_seal_pn(tern_conn *c, uint64_t now, uint8_t *out, size_t cap, const uint8_t *frames,
                       size_t frames_len, uint64_t *pn_out);
/* conn_tx.c: moves the sending direction to its next key and flips its key phase */
void tern__conn_update_tx_key(tern_conn *c);

#endif
