/*
 * sim_tern: plugs a tern_endpoint into the simulator as a node.
 *
 * Kept apart from sim.c so that tests which never use tern_endpoint (test_sim itself) do not pull
 * tern_endpoint_* symbols in from the static library.
 */
#ifndef TERN_TESTS_SIM_TERN_H
#define TERN_TESTS_SIM_TERN_H

#include "sim/sim.h"

/* Registers ep at addr: arrivals go to tern_endpoint_recv, sends come from tern_endpoint_send,
 * timers from tern_endpoint_next_deadline / tern_endpoint_handle_expiry. ep stays the caller's;
 * remove the node (sim_node_remove) before tern_endpoint_del if the sim runs on. NULL on
 * out-of-memory or when addr is taken. Datagrams tern_endpoint_recv rejects are only counted in
 * the endpoint's own stats. */
sim_node *sim_add_tern_endpoint(sim *s, tern_endpoint *ep, const tern_addr *addr);

#endif
