/*
 * Acknowledgements: the set of packet numbers received (as ranges, newest first), the ACK
 * frame's encoder and bounded decoder, and the receiver's ACK policy (every N ack-eliciting
 * packets, or after max_ack_delay, or at once when a gap shows: the ranges then act as a NACK).
 *
 * ACK frame (type 0x03): largest (varint), ack_delay in microseconds (varint), range_count
 * (varint), first_range (varint: packets below largest also acknowledged), then range_count
 * pairs of gap (varint: unacknowledged packets - 1) and length (varint: acknowledged - 1),
 * going down, exactly as QUIC's (RFC 9000 section 19.3).
 */
#ifndef TERN_CORE_ACK_H
#define TERN_CORE_ACK_H

#include <stddef.h>
#include <stdint.h>

#define TERN__ACK_RANGES 32      /* ranges remembered and sent; older ones are forgotten */
#define TERN__FRAME_ACK 0x03

typedef struct tern__range {
    uint64_t lo, hi; /* inclusive */
} tern__range;

typedef struct tern__ackset {
    tern__range r[TERN__ACK_RANGES]; /* r[0] holds the largest; disjoint, descending */
    size_t n;
    uint64_t largest_time;   /* when the largest was received */
    uint32_t unacked_eliciting; /* ack-eliciting packets since the last ACK sent */
    int ack_now;             /* send an ACK at the next opportunity */
    uint64_t ack_deadline;   /* send an ACK by then (TERN_TIME_NEVER when none pending) */
} tern__ackset;

void tern__ackset_init(tern__ackset *a);
/* Records pn; returns 1 when it lands out of order (below the largest, or above it with a gap). */
int tern__ackset_add(tern__ackset *a, uint64_t pn, uint64_t now);

/* Writes an ACK frame; returns the cursor after it or NULL when it does not fit. */
uint8_t *tern__ack_encode(const tern__ackset *a, uint64_t now, uint8_t *p, const uint8_t *end);

typedef struct tern__ack_frame {
    uint64_t largest, ack_delay_us;
    size_t n;                         /* ranges decoded */
    tern__range r[TERN__ACK_RANGES];  /* descending; ranges past TERN__ACK_RANGES are ignored */
} tern__ack_frame;

/* Decodes the body of an ACK frame (after the type). NULL with *err on malformed input
 * (a range that goes below zero is TERN_ERR_MALFORMED). */
const uint8_t *tern__ack_decode(const uint8_t *p, const uint8_t *end, tern__ack_frame *f,
                                int *err);

#endif
