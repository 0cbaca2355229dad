/*
 * Path MTU discovery (pmtu.c): the state it keeps in each connection (c->pmtu) and the calls
 * the connection makes into it: conn.c (start, timer), conn_rx.c (ACK frames, for the probes),
 * conn_tx.c (writing a probe), recovery.c (the size of each packet lost or acknowledged, probe
 * timeouts: black-hole detection) and path.c (a new active path). pmtu.c alone writes c->pmtu;
 * the rest of the core reads the size through tern__conn_max_payload (path_probe.c reads
 * c->pmtu.size to pad its challenges).
 */
#ifndef TERN_CORE_PMTU_H
#define TERN_CORE_PMTU_H

#include <stddef.h>
#include <stdint.h>

#include "core/ack.h"
#include "tern/tern.h"

/* RFC 8899 style: padded PING probes, not congestion signals */
typedef struct tern__pmtu {
    size_t size;            /* datagrams this large are known to pass (starts at max_udp_payload,
                               the base size; back to it on a black hole or a path change) */
    size_t probe_size;      /* the probe in flight */
    uint64_t probe_pn, probe_at, next;
    int in_flight, due, fails, step;
    /* black-hole detection (RFC 8899 4.3): packets above the base size declared lost since the
     * last such packet was acknowledged; while `suspect`, packets are built at the base size and
     * probes of `size` itself (`confirming`) decide whether the path still carries it */
    uint32_t lost_run;
    /* the latest send time of an acknowledged packet above the base size (acked_large: there
     * is one since the size was last reset): losses of packets sent before it don't count */
    uint64_t acked_large_sent;
    int acked_large;
    int suspect, confirming;
    int answered;           /* a packet was acknowledged since the suspicion began */
    uint64_t resume_next;   /* the search's schedule, put back when the size is confirmed */
} tern__pmtu;

/* The largest datagram the connection sends now (the path MTU, the peer's limit, less the relay
 * header on a relayed or introduced connection): flows, recovery and the transmit path size
 * their packets by it. */
size_t tern__conn_max_payload(const tern_conn *c);
/* The bytes of a short-header packet besides its frames. */
size_t tern__conn_packet_overhead(void);

void tern__pmtu_init(tern__pmtu *m, size_t size);
/* The connection is established: probing starts once the handshake settled (one RTT later),
 * unless tern_settings.no_pmtud. */
void tern__pmtu_start(tern_conn *c, uint64_t now);
/* When tern__pmtu_on_timer has something to do (TERN_TIME_NEVER: nothing). */
uint64_t tern__pmtu_deadline(const tern_conn *c);
void tern__pmtu_on_timer(tern_conn *c, uint64_t now);
void tern__pmtu_on_ack(tern_conn *c, uint64_t now, const tern__ack_frame *f);
/* A probe sealed into out when one is due (c->pmtu.due), else 0; negative on error. */
int tern__pmtu_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap);

/* Black-hole detection, called by recovery.c with the send time and size (tern__sent.time,
 * .bytes) of each data packet declared lost or acknowledged (late ACKs of packets declared lost
 * included), and on a probe timeout with the size of the largest packet still outstanding
 * (0: none). */
void tern__pmtu_on_lost(tern_conn *c, uint64_t now, uint64_t sent, size_t bytes);
void tern__pmtu_on_acked(tern_conn *c, uint64_t sent, size_t bytes);
void tern__pmtu_on_pto(tern_conn *c, uint64_t now, size_t largest_outstanding);
/* The active path changed (path.c's moves: migration, relay <-> direct, NAT rebinding, a stream
 * path): what was learnt about the old path says nothing about the new one. Back to the base
 * size, and a fresh search one smoothed RTT later on an established connection. */
void tern__pmtu_path_changed(tern_conn *c, uint64_t now);

#endif
