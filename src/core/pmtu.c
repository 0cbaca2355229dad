/*
 * Path MTU discovery (RFC 8899 style) on the active path of an established connection: padded
 * PING probes of the sizes of a ladder, largest first, that are not recorded for loss recovery
 * (a lost probe is not a congestion signal); the size of the first acknowledged one becomes the
 * connection's datagram size until larger sizes are tried again PMTU_RAISE later. The size the
 * other modules build packets to (tern__conn_max_payload) is decided here too.
 *
 * The size follows the path down as well (RFC 8899 4.3 and 5.2, "black hole detected"):
 *   - Suspicion. Packets above the base size (max_udp_payload) are watched: PMTU_BH_LOSSES of
 *     them declared lost with none of that size acknowledged in between (a loss of one sent
 *     before a large packet that was acknowledged does not count), or a probe timeout
 *     while one is outstanding, make the current size suspect. Until that is settled every
 *     packet is built at the base size, so data keeps moving (lost fragments are re-cut to fit:
 *     flow_send.c) even when nothing larger passes any more.
 *   - Confirmation. A probe of the current size itself goes out; its ACK clears the suspicion
 *     (the losses were congestion or bad luck). PMTU_BH_PROBES such probes lost in a row are a
 *     black hole, provided some packet was acknowledged meanwhile (a path that answers nothing
 *     is down, which says nothing about its MTU: the probes go on until it answers): the size
 *     drops to the base, tern_conn_stats.pmtu_black_holes counts it, and a fresh search starts
 *     from the top of the ladder.
 *   Random loss alone does not get there: besides a run of large losses (or a probe timeout) it
 *   takes PMTU_BH_PROBES probes lost in a row, about loss^2 per suspicion, and a suspicion
 *   costs one round trip at the base size.
 *   - Path change. A new active path (tern__pmtu_path_changed, from path.c) starts at the base
 *     size with a fresh search.
 */
#include <string.h>

#include "core/conn.h"
#include "core/conn_int.h"

/* Sizes path MTU discovery tries, largest first: Ethernet's 1500 less IPv4+UDP and less
 * IPv6+UDP, then common tunnel sizes. */
static const uint16_t PMTU_LADDER[] = {1472, 1452, 1400, 1350};
#define PMTU_N (sizeof(PMTU_LADDER) / sizeof(PMTU_LADDER[0]))
#define PMTU_TRIES 3                     /* probes of one size before the next smaller one */
#define PMTU_RAISE (600 * TERN_NS_PER_S) /* try larger sizes again after this (RFC 8899) */
#define PMTU_BH_LOSSES 3 /* large packets lost, none acknowledged between: the size is suspect */
#define PMTU_BH_PROBES 2 /* probes of the current size lost in a row: a black hole */

static uint64_t probe_timeout(const tern_conn *c)
{
    return 3 * tern__rec_rtt_pto(c) + c->peer.max_ack_delay;
}

/* The next size to probe, or 0 when no size above the current one is left to try. */
static size_t candidate(tern_conn *c)
{
    size_t limit = TERN_MAX_DATAGRAM;
    if (c->peer.max_udp_payload && c->peer.max_udp_payload < limit) limit = c->peer.max_udp_payload;
    while ((size_t)c->pmtu.step < PMTU_N) {
        size_t s = PMTU_LADDER[c->pmtu.step];
        if (s > c->pmtu.size && s <= limit) return s;
        if (s <= c->pmtu.size) return 0; /* smaller sizes would teach nothing */
        c->pmtu.step++;
    }
    return 0;
}

/* The bytes of a short-header packet besides its frames. */
size_t tern__conn_packet_overhead(void)
{
    return SHORT_HDR_LEN + TERN__AEAD_TAG_LEN;
}

/* The base size: what every path is assumed to carry (tern_settings.max_udp_payload). */
static size_t base_size(const tern_conn *c)
{
    return c->ep->s.max_udp_payload;
}

size_t tern__conn_max_payload(const tern_conn *c)
{
    /* a suspect size is not used until a probe confirms it; a direct stream has no path MTU:
     * the largest packet the peer accepts (fragments are cut anew if they go again on UDP) */
    size_t m = c->pmtu.size && !c->pmtu.suspect ? c->pmtu.size : base_size(c);
    if (tern__path_is_reliable(&c->path)) m = TERN_MAX_DATAGRAM;
    if (c->peer.max_udp_payload && c->peer.max_udp_payload < m) m = c->peer.max_udp_payload;
    /* the relay's header rides in front; an introduced peer's connection leaves room for it
     * even on a direct path, so that fragments cut there fit whole when they are retransmitted
     * after a move to the relay (they would be resent in parts otherwise: flow_send.c) */
    if (c->path.relayed || (c->p2p != NULL && c->p2p->probing && !c->p2p->has_stream))
        m -= TERN__RELAY_HDR_LEN; /* (a connect_opts connection has no relay) */
    return m;
}

void tern__pmtu_init(tern__pmtu *m, size_t size)
{
    m->size = size;
    m->next = TERN_TIME_NEVER;
    m->resume_next = TERN_TIME_NEVER;
}

void tern__pmtu_start(tern_conn *c, uint64_t now)
{
    if (!c->ep->s.no_pmtud) c->pmtu.next = now + c->rec.rtt.srtt; /* once the handshake settled */
}

uint64_t tern__pmtu_deadline(const tern_conn *c)
{
    if (c->pmtu.in_flight) return c->pmtu.probe_at + probe_timeout(c);
    return c->pmtu.due ? TERN_TIME_NEVER : c->pmtu.next;
}

/* Back to the base size with a fresh search at `next` (TERN_TIME_NEVER: none). */
static void reset(tern_conn *c, uint64_t next)
{
    tern__pmtu *m = &c->pmtu;
    m->size = base_size(c);
    m->in_flight = m->due = m->fails = m->step = 0;
    m->suspect = m->confirming = 0;
    m->lost_run = 0;
    m->acked_large = 0;
    m->next = c->ep->s.no_pmtud ? TERN_TIME_NEVER : next;
}

/* The current size is in doubt: packets at the base size, and a probe of the size at once. */
static void suspect(tern_conn *c, uint64_t now)
{
    tern__pmtu *m = &c->pmtu;
    /* a stream loses nothing to an MTU (the driver frames whole packets over TCP) */
    if (m->suspect || m->size <= base_size(c) || c->path.relayed || tern__path_is_stream(&c->path))
        return;
    m->suspect = 1;
    m->confirming = 1;
    /* a search probe in flight is forgotten (its ACK is ignored); the search resumes after */
    m->resume_next = m->in_flight ? now : m->next;
    m->in_flight = 0;
    m->fails = 0;
    m->answered = 0;
    m->due = 1;
    m->next = TERN_TIME_NEVER;
    c->st.pmtu_suspicions++;
    tern__ep_mark_send(c->ep, c);
}

void tern__pmtu_on_lost(tern_conn *c, uint64_t now, uint64_t sent, size_t bytes)
{
    if (bytes <= base_size(c) || c->pmtu.size <= base_size(c)) return;
    /* a large packet sent after this one was acknowledged: the size passes, this loss was
     * congestion (a queue overflowing in STARTUP drops runs of them) */
    if (c->pmtu.acked_large && sent <= c->pmtu.acked_large_sent) return;
    if (++c->pmtu.lost_run >= PMTU_BH_LOSSES) suspect(c, now);
}

void tern__pmtu_on_acked(tern_conn *c, uint64_t sent, size_t bytes)
{
    if (bytes > base_size(c)) {
        c->pmtu.lost_run = 0;
        if (!c->pmtu.acked_large || sent > c->pmtu.acked_large_sent) c->pmtu.acked_large_sent = sent;
        c->pmtu.acked_large = 1;
    }
    c->pmtu.answered = 1;
}

void tern__pmtu_on_pto(tern_conn *c, uint64_t now, size_t largest_outstanding)
{
    if (largest_outstanding > base_size(c)) suspect(c, now);
}

void tern__pmtu_path_changed(tern_conn *c, uint64_t now)
{
    uint64_t next = c->state == TERN_CONN_ESTABLISHED ? now + c->rec.rtt.srtt : TERN_TIME_NEVER;
    reset(c, next);
    if (c->state == TERN_CONN_ESTABLISHED) tern__conn_update_timer(c);
}

void tern__pmtu_on_timer(tern_conn *c, uint64_t now)
{
    if (c->pmtu.in_flight && c->pmtu.confirming && now >= c->pmtu.probe_at + probe_timeout(c)) {
        c->pmtu.in_flight = 0;
        if (++c->pmtu.fails >= PMTU_BH_PROBES && !c->pmtu.answered) {
            /* nothing at all was acknowledged since the suspicion began: the path is silent
             * (an outage), which says nothing about its MTU; keep probing until it answers */
            c->pmtu.fails = 0;
        }
        if (c->pmtu.fails >= PMTU_BH_PROBES) {
            /* black hole: smaller packets pass, the size does not */
            c->st.pmtu_black_holes++;
            reset(c, now);
            tern__rec_network_changed(c);
        } else {
            c->pmtu.due = 1; /* once more: one lost probe may be bad luck */
            tern__ep_mark_send(c->ep, c);
        }
    }
    if (c->pmtu.in_flight && now >= c->pmtu.probe_at + probe_timeout(c)) {
        c->pmtu.in_flight = 0; /* lost: not a congestion signal, just too large (or unlucky) */
        if (++c->pmtu.fails >= PMTU_TRIES) {
            c->pmtu.fails = 0;
            c->pmtu.step++;
        }
        c->pmtu.next = now;
    }
    if (!c->pmtu.in_flight && now >= c->pmtu.next && c->pmtu.next != TERN_TIME_NEVER) {
        c->pmtu.due = 1;
        c->pmtu.next = TERN_TIME_NEVER;
        tern__ep_mark_send(c->ep, c);
    }
}

/* An ACK frame arrived: did it acknowledge the probe? */
void tern__pmtu_on_ack(tern_conn *c, uint64_t now, const tern__ack_frame *f)
{
    if (!c->pmtu.in_flight) return;
    for (size_t i = 0; i < f->n; i++) {
        if (c->pmtu.probe_pn < f->r[i].lo || c->pmtu.probe_pn > f->r[i].hi) continue;
        c->pmtu.in_flight = 0;
        if (c->pmtu.confirming) {
            /* the path still carries the size: the losses were not about it */
            c->pmtu.confirming = c->pmtu.suspect = 0;
            c->pmtu.lost_run = 0;
            c->pmtu.fails = 0;
            c->pmtu.next = c->pmtu.resume_next;
            tern__ep_mark_send(c->ep, c);
            return;
        }
        c->pmtu.size = c->pmtu.probe_size;
        c->pmtu.lost_run = 0;
        c->pmtu.fails = 0;
        /* the ladder runs from the top: the first size that passes is the answer for now */
        c->pmtu.step = 0;
        c->pmtu.next = now + PMTU_RAISE;
        tern__rec_network_changed(c);
        return;
    }
}

/* A padded PING of the next size on the active path (never through a relay). 0 when none is
 * due. The packet is not recorded for loss recovery: its loss says nothing about congestion. */
int tern__pmtu_write(tern_conn *c, uint64_t now, uint8_t *out, size_t cap)
{
    if (!c->pmtu.due || c->state != TERN_CONN_ESTABLISHED) return 0;
    if (c->path.relayed || tern_addr_is_stream(&c->path.remote)) {
        c->pmtu.due = 0; /* a relay adds a hop we cannot probe; base size there (a stream has
                            no path MTU: the peer's limit) */
        return 0;
    }
    /* a confirmation probe tries the current size itself */
    size_t size = c->pmtu.confirming ? c->pmtu.size : candidate(c);
    if (size == 0) {
        c->pmtu.due = 0;
        c->pmtu.step = 0;
        c->pmtu.next = now + PMTU_RAISE;
        return 0;
    }
    if (cap < size) return 0;
    uint8_t frames[TERN_MAX_DATAGRAM];
    size_t flen = size - SHORT_HDR_LEN - TERN__AEAD_TAG_LEN;
    memset(frames, 0, flen); /* PADDING */
    if (tern__frame_put_ping(frames, frames + flen, TERN__FRAME_PING, 0) == NULL) return 0;
    uint64_t pn = c->tx.next_pn;
    int n = tern__conn_seal_pn(c, now, out, cap, frames, flen, NULL);
    if (n <= 0) return n;
    c->pmtu.due = 0;
    c->pmtu.in_flight = 1;
    c->pmtu.probe_pn = pn;
    c->pmtu.probe_size = size;
    c->pmtu.probe_at = now;
    tern__conn_update_timer(c);
    return n;
}
