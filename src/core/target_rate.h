/*
 * Encoder feedback (target_rate.c): the payload rate a live application should produce now,
 * from the delivery the ACKs show, the queueing delay and the loss rate (tern_conn_target_rate,
 * on_target_rate). One per connection, inside its loss recovery (tern__recovery.tgt), reset
 * with the path. Sans-I/O: every entry point takes the time.
 */
#ifndef TERN_CORE_TARGET_RATE_H
#define TERN_CORE_TARGET_RATE_H

#include <stdint.h>

/* Delivery-rate windows remembered (each about half a min RTT long): enough for the longest
 * look-back (TERN__TGT_DLV_RTTS smoothed RTTs) while a queue stands. */
#define TERN__TGT_RING 32

/* What the model needs from one ACK (recovery.c fills it). Rates in bytes per second. */
typedef struct tern__tgt_input {
    uint64_t now;
    uint64_t acked_bytes; /* newly acknowledged bytes that were in flight */
    uint64_t srtt, latest_rtt;
    int rtt_sample;      /* this ACK gave an RTT sample (latest_rtt is fresh) */
    uint64_t cc_bw;      /* the congestion controller's bandwidth estimate */
    int cc_limited;      /* the delivery-rate sample was not app-limited */
    uint64_t datagram;   /* the largest datagram we build now (overhead share) */
    uint64_t pacing;     /* the controller's pacing rate */
    uint64_t unsent;     /* bytes the flows hold that have not left yet (UINT64_MAX: not
                            sampled at this ACK, see tern__target_backlog_due) */
    uint64_t repair_q16; /* repair's share of what the flows with FEC send (fec.c) */
} tern__tgt_input;

typedef struct tern__tgt_sample {
    uint64_t rate, at;
} tern__tgt_sample;

typedef struct tern__target {
    uint64_t bps;      /* the target, payload bits per second; 0: no estimate yet */
    uint64_t reported; /* what on_target_rate last said (0: nothing yet) */
    uint64_t reported_at;
    uint64_t last_rise, last_fall;
    uint64_t rise_qd; /* the queueing delay at the last rise */
    /* min RTT over a sliding window (two halves of TERN__TGT_MIN_RTT_WIN): the propagation
     * delay the queueing delay is measured against, so that a path that became longer is not
     * taken for a standing queue for ever */
    uint64_t min_rtt[2];
    uint64_t min_rtt_start; /* when the newer half began */
    uint64_t queue_delay;   /* srtt - min RTT + the standing backlog, at the last ACK */
    /* the delivery window being measured: acknowledged bytes since win_start, the lowest RTT
     * sample in it (UINT64_MAX: none), lost bytes */
    uint64_t win_start, win_bytes, win_lost, win_min_rtt;
    uint64_t win_min_backlog; /* the least time the sender's backlog needed at an ACK in it */
    uint64_t backlog_next;    /* when the backlog is next sampled */
    /* closed windows: every one's delivery rate (dlv), and those taken while our own queue
     * stood throughout (cap: the bottleneck was busy, so its rate is the capacity) */
    tern__tgt_sample dlv[TERN__TGT_RING];
    tern__tgt_sample cap[TERN__TGT_RING];
    uint32_t dlv_next, cap_next;
    /* the capacity seen at the last standing queue, bytes/s on the wire (0: none known, or it
     * was probed past): rises near it are small */
    uint64_t ceiling;
    uint8_t episode;      /* a standing queue is being drained */
    uint8_t queue_seen;   /* there was one since the start (startup steps are over) */
    uint8_t armed;        /* the smoothed RTT came down since the last episode */
    uint64_t episode_at;  /* when it began */
    uint64_t episode_end; /* when the last one ended */
    uint64_t end_qd;      /* the queueing delay then */
    uint64_t backlog;     /* the sender's backlog (ns at the pacing rate) that stood
                             through the last window */
    uint64_t episode_bps; /* the target when it began */
    uint64_t episode_cap; /* the capacity it showed last (0: none yet) */
    uint64_t loss_q16;    /* loss rate of windows without a queue (the path's own) */
    uint8_t pending;      /* an on_target_rate call is due (tern__target_events) */
} tern__target;

/* Starts (or restarts, on a new path) with no estimate. */
void tern__target_init(tern__target *t, uint64_t now);
/* One processed ACK. */
void tern__target_on_ack(tern__target *t, const tern__tgt_input *in);
/* Whether this ACK should sample the sender's backlog (tern__target_unsent, which visits every
 * sending flow): 16 times per delivery window at most, at least 1 ms apart. */
int tern__target_backlog_due(tern__target *t, uint64_t now);
/* Bytes declared lost (they count against the window's delivery). */
void tern__target_on_lost(tern__target *t, uint64_t bytes);

/* The pure parts, for tests: the share of the wire rate that is payload at loss_q16 with
 * repair_q16 of the bytes of the flows with FEC being repair, for datagrams of `datagram` bytes
 * (1/65536 units), and the factor (1/65536 units) that drains a queue of queue_delay on a path of
 * min_rtt. */
uint64_t tern__target_payload_share_q16(uint64_t loss_q16, uint64_t repair_q16, uint64_t datagram);
uint64_t tern__target_drain_q16(uint64_t queue_delay, uint64_t min_rtt);
/* The queueing delay above which our own queue counts as standing, on a path of min_rtt
 * delivering rate bytes/s (0: unknown) in datagrams of `datagram` bytes. */
uint64_t tern__target_queue_threshold(uint64_t min_rtt, uint64_t datagram, uint64_t rate);

#endif
