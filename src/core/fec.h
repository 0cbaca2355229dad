/*
 * Forward error correction for flows (fec.c; wire format in docs/protocol.md 6.4 "Repair").
 *
 * Sender: the fragments of a flow with fec != TERN_FEC_OFF are grouped as they are first sent
 * (up to fec_group consecutive FSNs; a group also closes when the flow's queue runs empty, so it
 * never waits for future data, and at the end of a message with a deadline or frame
 * dependencies: one frame, one group). Each fragment is a source symbol: its canonical encoding
 * (flags, length, data) zero-padded to the group's longest. When a group closes, m repair
 * symbols are computed (systematic Reed-Solomon over GF(2^8) through ISA-L's erasure code with
 * a Cauchy matrix, so any k of the k + m symbols rebuild the group; plain XOR when m is 1) and
 * sent as REPAIR frames right after the group's data, before new data of the flow, paced and
 * counted in flight like data (ENT_REPAIR in the sent record). A fragment declared lost while
 * its group's repair waits or is in flight is held (neither resent nor given up) until that
 * repair was acknowledged or lost: rebuilt, REPAIRED acknowledges it. m is fec_repair_pct of k
 * (FIXED) or follows the measured loss, its bursts and the group's deadline (ADAPTIVE: repair
 * exactly where a retransmission could not arrive in time by the sender's own loss-detection
 * and give-up rules, a live frame's playout included; fec.c's group_repair).
 *
 * Receiver: once a flow got a REPAIR frame, a copy of each fragment received on it is kept
 * (the source cache, twice the largest group seen), since fragments are delivered long before
 * their group's repair arrives (one not delivered yet serves from the flow's window); repair
 * symbols of groups with missing fragments are held until k symbols are there. Rebuilt
 * fragments enter flow_recv.c exactly as a received FLOW_DATA, and a REPAIRED frame tells the
 * sender, which counts them as acknowledged (no retransmission).
 * Everything held for repair (groups, repair symbols, cached sources) is bounded per connection
 * by TERN__FEC_RX_BUDGET (and by the connection's conn_memory); what does not fit is dropped
 * and counted (fec_dropped), never an error. fec_unrecoverable counts a held group once, when
 * a fragment it missed comes after its repair (retransmitted: the repair was exhausted) or it
 * is dropped with fragments missing (given up).
 */
#ifndef TERN_CORE_FEC_H
#define TERN_CORE_FEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"

enum {
    TERN__FRAME_REPAIR = 0x09,
    TERN__FRAME_REPAIRED = 0x0a,
};

#define TERN__FEC_MAX_K 64  /* source symbols per group at most (fec_group 1..64) */
#define TERN__FEC_MAX_M 64  /* repair symbols per group at most */
/* a symbol: flags (1 byte), data length (2 bytes, big endian), [DEP fields: 3 varints], data */
#define TERN__FEC_SYM_HDR 3
#define TERN__FEC_SYM_MAX (TERN__FEC_SYM_HDR + 24 + TERN_MAX_DATAGRAM)
/* bytes a fragment of an FEC flow leaves free in its packet, so that a REPAIR frame of a
 * full-size fragment (k, m, index, a ttl of up to 4 bytes, the symbol's 3-byte header, less
 * the fragment's flags) fits a packet too */
#define TERN__FEC_RESERVE 12
/* what a peer can make us hold for repair on one connection: held repair symbols, their groups
 * and the source cache (default; the connection's conn_memory applies as well) */
#define TERN__FEC_RX_BUDGET (256u << 10)
/* rebuilt fragments waiting to be reported in REPAIRED frames (ranges; more are forgotten:
 * the sender then retransmits them, which costs bytes, never correctness) */
#define TERN__FEC_REPAIRED_MAX 32
/* the largest ttl a REPAIR may carry (one day, in ms; beyond is a protocol violation) */
#define TERN__FEC_MAX_TTL (86400000ull + 1)
/* ADAPTIVE: the probability that a group loses more symbols than its repair can rebuild that
 * the repair rate aims below */
#define TERN__FEC_TARGET_FAIL 1e-3
/* ADAPTIVE, live frames: a lost live frame takes the frames after it until a new keyframe
 * comes back (about a round trip's worth), so their groups aim below TERN__FEC_TARGET_FAIL
 * divided by that many frames (1 + srtt / frame interval), the divisor at most this */
#define TERN__FEC_LIVE_CASCADE_MAX 100
/* ADAPTIVE: how long beyond the one-way delay a live receiver is taken to wait for a frame (a
 * message with frame dependencies) before its playout: repair protects live frames wherever a
 * retransmission would take longer (at 300 ms RTT always; at 40 ms never) */
#define TERN__FEC_LIVE_SLACK (100 * TERN_NS_PER_MS)

/* ---------------------------------------------------------------- codec (pure) */

/* Scratch bytes tern__fec_encode / tern__fec_decode need for k sources and m repair. */
size_t tern__fec_scratch_size(unsigned k, unsigned m);
/* Computes m repair symbols of len bytes from k source symbols (1 <= k <= 64, 1 <= m <= 64;
 * m == 1: XOR of the sources). TERN_OK, TERN_ERR_INVALID_ARG. */
int tern__fec_encode(unsigned k, unsigned m, size_t len, uint8_t *const *src, uint8_t *const *rep,
                     uint8_t *scratch);
/* Rebuilds the sources not in have (have[j] != 0: src[j] holds source j) from those that are
 * and the repair symbols in rep_have. Every src[j] points to len writable bytes. TERN_OK;
 * TERN_ERR_AGAIN when fewer than k symbols are there; TERN_ERR_INVALID_ARG. */
int tern__fec_decode(unsigned k, unsigned m, size_t len, uint8_t *const *src, const uint8_t *have,
                     uint8_t *const *rep, const uint8_t *rep_have, uint8_t *scratch);
/* ADAPTIVE: the fewest repair symbols (at most cap) for a group of k sources such that, for a
 * Gilbert-Elliott loss process of mean loss rate `loss` and mean burst length `burst`, the
 * group (sources then repair) loses more than it can rebuild with probability below `target`
 * (TERN__FEC_TARGET_FAIL, less for live frames); cap when no m <= cap reaches it; 0 when loss
 * is 0. */
unsigned tern__fec_choose_m(unsigned k, unsigned cap, double loss, double burst, double target);

/* ---------------------------------------------------------------- sender (flow_send.c) */

/* Bytes a new fragment of f leaves free in its packet (TERN__FEC_RESERVE with FEC, else 0). */
size_t tern__fec_reserve(const tern__sflow *f);
/* A fragment of f was sent for the first time (after the scheduler took it off the queue):
 * adds it to the group, closes the group when full or when the queue ran empty. */
void tern__fec_on_sent(tern_conn *c, tern__sflow *f, uint64_t fsn, const tern__frag *fr,
                       uint64_t now);
/* The priority of f's repair waiting to be sent, or -1 (repair too late to help is dropped). */
int tern__fec_tx_priority(tern_conn *c, tern__sflow *f, uint64_t now);
/* Writes the next REPAIR frame of f; NULL when it does not fit what is left of the packet. */
uint8_t *tern__fec_write_repair(tern_conn *c, tern__sflow *f, uint8_t *p, const uint8_t *end,
                                tern__sent *rec, uint64_t now);
void tern__fec_tx_free(tern_conn *c, tern__sflow *f);
/* Repair's share of the bytes our flows with FEC send, now (in 1/65536ths): repair bytes over
 * source and repair bytes, averaged over the last groups; 0 without FEC. For the encoder's
 * target rate (target_rate.c), which leaves room for it. */
uint32_t tern__fec_repair_share_q16(const tern_conn *c);
/* Fragment fsn of f was declared lost while repair of its group is waiting to be sent or in
 * flight: 1 when fec.c holds it (it stays in flight for flow_send.c) until that repair was
 * acknowledged or lost (then the receiver rebuilt it and said so in REPAIRED, or it goes back
 * to tern__flow_on_lost: tern__fec_release); 0: lost as usual. */
int tern__fec_hold_lost(tern_conn *c, tern__sflow *f, uint64_t fsn);
/* A packet carrying repair of f (entry e, ENT_REPAIR) was acknowledged or lost. */
void tern__fec_repair_done(tern_conn *c, tern__sflow *f, const tern__sent_entry *e);
/* Hands the held fragments whose repair is done back to tern__flow_on_lost (called before the
 * scheduler looks at f: after a received packet was processed whole, REPAIRED included). */
void tern__fec_release(tern_conn *c, tern__sflow *f, uint64_t now);

/* ---------------------------------------------------------------- receiver (flow_recv.c) */

/* REPAIR and REPAIRED frames (after the type). TERN_OK or TERN_ERR_PROTOCOL. */
int tern__fec_on_frame(tern_conn *c, uint64_t type, const uint8_t **pp, const uint8_t *end);
/* Fragment fsn of f became present (s): kept in the source cache while f uses FEC. */
void tern__fec_on_stored(tern_conn *c, tern__rflow *f, uint64_t fsn, const tern__rfrag *s);
/* After fragment fsn of f was processed: rebuilds what its groups now can. */
int tern__fec_after_data(tern_conn *c, tern__rflow *f, uint64_t fsn);
void tern__fec_rflow_free(tern_conn *c, tern__rflow *f);
/* REPAIRED frames due (control frames: flow_send.c's tern__flow_write_control). */
uint8_t *tern__fec_write_control(tern_conn *c, uint8_t *p, const uint8_t *end);
int tern__fec_has_control(const tern_conn *c);
/* The connection's receive-side state (tern__flows_free). */
void tern__fec_conn_free(tern_conn *c);

#endif
