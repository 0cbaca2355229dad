/*
 * Flow-internal calls between flow.c (the budget, lookup, reaping, the public flow calls),
 * flow_send.c (the sending side) and flow_recv.c (the receiving side). The rest of the core uses
 * the flow calls declared in conn.h.
 */
#ifndef TERN_CORE_FLOW_INT_H
#define TERN_CORE_FLOW_INT_H

#include "core/conn.h"

/* flow.c */
tern__rflow *tern__rflow_find(const tern_conn *c, uint64_t id);

/* flow_send.c: unlinks and frees sending flows that are closed and fully acknowledged */
void tern__sflows_reap(tern_conn *c);

/* flow_recv.c */
void tern__rflow_free(tern_conn *c, tern__rflow *f);
/* unlinks and frees receiving flows that are finished */
void tern__rflows_reap(tern_conn *c);

#endif
