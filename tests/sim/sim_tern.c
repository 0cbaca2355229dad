/*
 * sim_tern: the four sim_node_ops for a tern_endpoint.
 *
 * Design: the ops table is static and constant; the node pointer is the endpoint itself, so no
 * per-endpoint state is allocated here. This file is the only part of the test support library
 * that references tern_endpoint_*; a test that never calls sim_add_tern_endpoint does not link it.
 */
#include "sim/sim_tern.h"

static void tern_node_recv(void *node, uint64_t now, const tern_addr *local,
                           const tern_addr *remote, const uint8_t *data, size_t len)
{
    (void)tern_endpoint_recv(node, now, local, remote, data, len);
}

static int tern_node_send(void *node, uint64_t now, tern_datagram *dgrams, size_t max,
                          uint8_t *buf, size_t buf_len)
{
    return tern_endpoint_send(node, now, dgrams, max, buf, buf_len);
}

static uint64_t tern_node_next_deadline(void *node)
{
    return tern_endpoint_next_deadline(node);
}

static void tern_node_expire(void *node, uint64_t now)
{
    tern_endpoint_handle_expiry(node, now);
}

static const sim_node_ops tern_node_ops = {
    tern_node_recv,
    tern_node_send,
    tern_node_next_deadline,
    tern_node_expire,
};

sim_node *sim_add_tern_endpoint(sim *s, tern_endpoint *ep, const tern_addr *addr)
{
    return sim_add_node(s, &tern_node_ops, ep, addr);
}
