#include "support/xfer.h"

#include <assert.h>

uint8_t sim_xfer_pattern(uint64_t i)
{
    return (uint8_t)(i * 2654435761u >> 13);
}

void sim_xfer_on_message(tnet_node *n, tern_conn *c, uint64_t flow, const uint8_t *d, size_t len)
{
    (void)c;
    (void)flow;
    sim_xfer *x = n->user;
    uint64_t now = sim_now(x->s);
    for (size_t i = 0; i < len; i++)
        if (d[i] != sim_xfer_pattern(x->received + i)) {
            x->bad++;
            break;
        }
    x->received += len;
    if (x->last_rx_at && now - x->last_rx_at > x->max_gap) {
        x->max_gap = now - x->last_rx_at;
        x->gap_end = now;
    }
    x->last_rx_at = now;
    if (x->on_rx) x->on_rx(x);
    if (x->received == x->total && x->done_at == 0) x->done_at = now;
}

void sim_xfer_fill(sim_xfer *x, size_t msg_size, uint64_t queue_limit)
{
    static uint8_t buf[SIM_XFER_MAX_MSG];
    assert(msg_size > 0 && msg_size <= sizeof(buf));
    while (x->queued < x->total && tern_flow_queued(x->sc, x->flow) < queue_limit) {
        size_t n = msg_size;
        if (n > x->total - x->queued) n = (size_t)(x->total - x->queued);
        for (size_t i = 0; i < n; i++)
            buf[i] = sim_xfer_pattern(x->queued + i);
        if (tern_flow_send(x->sc, x->flow, sim_now(x->s), buf, n, -1) != TERN_OK) break;
        x->queued += n;
    }
}
