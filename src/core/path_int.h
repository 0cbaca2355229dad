/*
 * Calls between the files of the path module: path.c (paths, the candidate table, validation,
 * anti-amplification, migration and fallback, what arrives on a path), path_probe.c (probes,
 * their timers, the handshake hooks) and path_punch.c (hole punching, expectations). The rest
 * of the core uses the path calls declared in conn.h.
 */
#ifndef TERN_CORE_PATH_INT_H
#define TERN_CORE_PATH_INT_H

#include <string.h>

#include "core/conn.h"

#define DEFAULT_INTERVAL (200 * TERN_NS_PER_MS) /* between probes of one candidate */

static inline void tern__path_set(tern__path *p, const tern_addr *local, const tern_addr *remote,
                                  int relayed, const uint8_t *channel)
{
    memset(p, 0, sizeof(*p));
    p->local = *local;
    p->remote = *remote;
    p->relayed = relayed ? 1 : 0;
    if (relayed) memcpy(p->channel, channel, TERN_RELAY_CHANNEL_LEN);
}

/* A handed address that never answered and has used its allowance: nothing may go there. */
static inline int tern__path_exhausted(const tern_conn *c, const tern__path *p)
{
    return p->handed && !p->validated && p->rx_bytes == 0 &&
           p->tx_dgrams >= c->ep->s.probe_tries;
}

static inline void tern__path_count_sent(tern__path *p, size_t n)
{
    p->tx_bytes += n;
    p->tx_dgrams++;
}


/* path_punch.c */
/* A client connection whose handshake runs over candidates (tern_endpoint_connect_peer,
 * tern_endpoint_connect_opts): the server's key pinned, the Initial's DCID drawn, c->p2p made
 * with probing on. NULL when out of memory. */
tern_conn *tern__p2p_client_new(tern_endpoint *ep, uint64_t now, const uint8_t pub[TERN_KEY_LEN]);

/* path.c */
/* c->p2p, allocated on first use; NULL when out of memory. */
tern__p2p *tern__p2p_get(tern_conn *c);
/* The client's handshake stops matching punches (its tag). */
void tern__p2p_stop_punch_match(tern_conn *c);
/* The index of the candidate on that path, or -1. */
int tern__cand_find(const tern__p2p *p, const tern_addr *remote, int relayed,
                    const uint8_t *channel);
/* Adds a candidate (probing); NULL when the table is full. */
tern__cand *tern__cand_add(tern_conn *c, uint64_t now, const tern_addr *local,
                           const tern_addr *remote, int relayed, const uint8_t *channel,
                           int learned);
/* Probing goes on while the connection is relayed (or its path unvalidated). */
int tern__p2p_probing_active(const tern_conn *c);
/* How long a direct path may leave an ack-eliciting packet unanswered. */
uint64_t tern__p2p_fallback_after(const tern_conn *c);
/* Has the connection a fallback route of its own (a relay route, a stream)? */
static inline int tern__p2p_has_fallback(const tern__p2p *p)
{
    return p->has_relay || p->has_stream;
}
/* Adds the stream route of tern_endpoint_connect_opts as a candidate (not probed until told);
 * NULL when the table is full. */
tern__cand *tern__p2p_stream_add(tern_conn *c, uint64_t now);
/* Is the direct active path silent? (see path.c; may arm a re-check) */
int tern__p2p_direct_silent(tern_conn *c, uint64_t now);
/* The candidate that is our fallback route (relay, stream), or -1. */
int tern__p2p_fallback_cand(tern_conn *c, uint64_t now);
/* Candidate i becomes the active path (on_path); the old active path becomes candidate i. */
void tern__p2p_move(tern_conn *c, uint64_t now, int i);
/* Client: the direct path went silent; candidate i (relay, stream) carries the connection now. */
void tern__p2p_fall_back(tern_conn *c, uint64_t now, int i);

#endif
