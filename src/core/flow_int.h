/*
 * Flow-internal calls between flow.c (the budget, lookup, reaping, the public flow calls),
 * flow_send.c (the sending side), flow_recv.c (the receiving side) and flow_events.c (the
 * sending side's events). The rest of the core uses
 * the flow calls declared in conn.h.
 */
#ifndef TERN_CORE_FLOW_INT_H
#define TERN_CORE_FLOW_INT_H

#include "core/conn.h"

/* flow.c */
tern__rflow *tern__rflow_find(const tern_conn *c, uint64_t id);

/* flow_send.c: unlinks and frees sending flows that are closed and fully acknowledged */
void tern__sflows_reap(tern_conn *c);
/* flow_send.c: a bound, erring long, of the one-way delay of a packet sent now (the TTL of a
 * FLOW_DATA is the time left less this; fec.c's REPAIR does the same) */
uint64_t tern__flow_owd_bound(const tern_conn *c);
/* flow_send.c: the DEP fields (docs/protocol.md 6.2) fragment fr carries, into v; 0: none */
int tern__flow_frag_dep(const tern__frag *fr, uint64_t v[3]);

/* flow_recv.c */
void tern__rflow_free(tern_conn *c, tern__rflow *f);
/* unlinks and frees receiving flows that are finished */
void tern__rflows_reap(tern_conn *c);

/* ---------------------------------------------------------------- frame-aware delivery */

/* Can a message with these options be queued on f now (flow_send.c)? TERN_OK,
 * TERN_ERR_INVALID_ARG (bad flags, a dependency on a later message or on an unordered flow),
 * TERN_ERR_STATE (it depends on a message already given up). */
int tern__flow_msg_check(const tern__sflow *f, const tern_msg_opts *opts);
/* Gives m the flow's next message ID and its dependencies (opts NULL: none). */
void tern__flow_msg_number(tern__sflow *f, tern__msg *m, const tern_msg_opts *opts);
/* The peer's KEYFRAME_REQUEST for our flow f: it skipped message mid (on_keyframe_request owed,
 * unless a keyframe after mid is queued already). */
void tern__flow_on_kf_request(tern_conn *c, tern__sflow *f, uint64_t mid);

/* ---------------------------------------------------------------- write-side events */

/* Does the flow's queue and the connection's budget take a message of len bytes now (ref: the
 * bytes are referenced, not copied)? TERN_OK, TERN_ERR_AGAIN, TERN_ERR_TOO_LARGE (flow.c). */
int tern__flow_send_admit(const tern_conn *c, const tern__sflow *f, size_t len, int ref);
/* A message leaves the queue for good (flow_events.c): delivered, given up, or its flow freed.
 * A referenced one waits on the flow's release list for on_flow_release. */
void tern__flow_msg_ended(tern_conn *c, tern__sflow *f, tern__msg *m);
/* Reports what happened to the flows since the last call: on_flow_release, on_flow_acked and
 * on_flow_writable, per flow in that order. Called after each received packet (safe point). */
void tern__flow_events(tern_conn *c);
/* on_flow_release for the messages on f's release list, and frees their records. */
void tern__flow_releases(tern_conn *c, tern__sflow *f);

#endif
