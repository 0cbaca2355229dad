/*
 * Congestion control, pacing and delivery-rate estimation: the interface between loss recovery
 * (which tracks sent packets, ACKs and losses) and the controllers (cc_newreno.c, cc_cubic.c,
 * cc_bbr.c). Everything is in bytes and nanoseconds; nothing here reads a clock or allocates.
 *
 * Loss recovery calls, for every packet that counts toward bytes in flight:
 *   tern__rate_on_sent()  when it is sent (snapshots the delivery state into the packet record),
 *   then on each ACK: tern__rate_on_acked() for every newly acknowledged packet, then
 *   tern__rate_finish() once, then cc->ops->on_ack() with the filled tern__cc_ack;
 *   on loss: cc->ops->on_loss() once per congestion event with the lost bytes.
 * The sender may send while bytes_in_flight < ops->cwnd() and no earlier than the pacer allows.
 */
#ifndef TERN_CORE_CC_H
#define TERN_CORE_CC_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- delivery rate (BBR style) */

/* Per connection: what has been delivered so far (draft-cheng-iccrg-delivery-rate-estimation). */
typedef struct tern__rate_state {
    uint64_t delivered;        /* bytes acknowledged so far */
    uint64_t delivered_time;   /* when `delivered` last grew */
    uint64_t first_sent_time;  /* send time of the packet that started the current interval */
    uint64_t app_limited;      /* 0, or `delivered` + in-flight at the moment the app ran dry */
    /* the sample being built during one ACK */
    uint64_t prior_delivered, prior_time, send_elapsed, ack_elapsed, newest_sent_time;
    int sample_app_limited, have_sample;
    uint64_t rtt_of_newest;
} tern__rate_state;

/* Per sent packet: the snapshot taken when it was sent. */
typedef struct tern__rate_snap {
    uint64_t delivered, delivered_time, first_sent_time, sent_time;
    uint8_t is_app_limited;
} tern__rate_snap;

typedef struct tern__rate_sample {
    uint64_t delivery_rate; /* bytes per second; 0 when there is no valid sample */
    uint64_t delivered;     /* bytes delivered over interval_ns */
    uint64_t interval_ns;
    uint64_t prior_delivered;
    uint64_t rtt_ns;        /* RTT of the most recently sent packet that this ACK acknowledged */
    int is_app_limited;
} tern__rate_sample;

void tern__rate_init(tern__rate_state *r, uint64_t now);
/* A packet of `bytes` leaves now with bytes_in_flight already in flight (before it). */
void tern__rate_on_sent(tern__rate_state *r, tern__rate_snap *snap, uint64_t now,
                        uint64_t bytes_in_flight);
/* The sender has nothing to send although the window allows it: samples until the current
 * in-flight data is delivered are app-limited (they may under-estimate the bandwidth). */
void tern__rate_on_app_limited(tern__rate_state *r, uint64_t bytes_in_flight);
/* One newly acknowledged packet (call for each in the ACK, any order). */
void tern__rate_on_acked(tern__rate_state *r, const tern__rate_snap *snap, uint32_t bytes,
                         uint64_t now);
/* Closes the ACK: fills rs. */
void tern__rate_finish(tern__rate_state *r, uint64_t now, tern__rate_sample *rs);

/* ---------------------------------------------------------------- controllers */

typedef struct tern__cc_ack {
    uint64_t now;
    uint64_t acked_bytes;        /* newly acknowledged bytes that were in flight */
    uint64_t bytes_in_flight;    /* after removing the acknowledged and lost packets */
    uint64_t prior_in_flight;    /* before this ACK */
    uint64_t largest_acked_sent_time;
    uint64_t latest_rtt, min_rtt, smoothed_rtt;
    tern__rate_sample rs;
    int app_limited;             /* the sender is not using the window it has */
} tern__cc_ack;

typedef struct tern__cc_loss {
    uint64_t now;
    uint64_t lost_bytes;
    uint64_t largest_lost_sent_time; /* a loss of a packet sent before the current recovery
                                        period started is not a new congestion event */
    uint64_t bytes_in_flight;        /* after removing the lost packets */
    int persistent;                  /* RFC 9002 persistent congestion */
} tern__cc_loss;

#define TERN__CC_STATE_MAX 512 /* bytes of state any controller may use */

typedef struct tern__cc_ops {
    const char *name;
    void (*init)(void *st, size_t max_datagram, uint64_t now);
    void (*on_sent)(void *st, uint64_t now, size_t bytes, uint64_t bytes_in_flight);
    void (*on_ack)(void *st, const tern__cc_ack *ack);
    void (*on_loss)(void *st, const tern__cc_loss *loss);
    /* The window: the sender keeps bytes_in_flight below it. */
    uint64_t (*cwnd)(const void *st);
    /* The pacing rate in bytes per second (0: pace at cwnd / smoothed_rtt). */
    uint64_t (*pacing_rate)(const void *st, uint64_t smoothed_rtt);
    /* The controller's bandwidth estimate in bytes per second (for the application's encoder). */
    uint64_t (*bandwidth)(const void *st, uint64_t smoothed_rtt);
} tern__cc_ops;

typedef struct tern__cc {
    const tern__cc_ops *ops;
    _Alignas(8) uint8_t st[TERN__CC_STATE_MAX];
} tern__cc;

extern const tern__cc_ops tern__cc_newreno;
extern const tern__cc_ops tern__cc_cubic;
extern const tern__cc_ops tern__cc_bbr;

/* ---------------------------------------------------------------- pacer */

/* Lets bursts of up to `quantum` bytes out at once, then spaces packets at the pacing rate. */
typedef struct tern__pacer {
    uint64_t rate;      /* bytes per second */
    uint64_t quantum;   /* burst allowance in bytes */
    uint64_t tokens;    /* bytes that may leave now */
    uint64_t last;      /* when tokens were last refilled */
} tern__pacer;

void tern__pacer_init(tern__pacer *p, uint64_t now, size_t max_datagram);
void tern__pacer_set_rate(tern__pacer *p, uint64_t bytes_per_s, size_t max_datagram);
/* The earliest time a packet of `bytes` may leave (now if allowed now). */
uint64_t tern__pacer_next(tern__pacer *p, uint64_t now, size_t bytes);
void tern__pacer_on_sent(tern__pacer *p, uint64_t now, size_t bytes);

#endif
