/*
 * RFC 5780 NAT behaviour discovery as a sans-I/O state machine (section 4.3 mapping, 4.4
 * filtering). One Binding transaction runs at a time from the same local socket:
 *   mapping I   -> primary address:        mapped0 (and OTHER-ADDRESS); mapped0 == local: no NAT
 *   mapping II  -> other IP, primary port: mapped1 == mapped0: endpoint-independent
 *   mapping III -> other IP and port:      mapped2 == mapped1: address-dependent, else
 *                                           address and port-dependent
 *   filtering II  -> primary, change IP and port: answered: endpoint-independent
 *   filtering III -> primary, change port:        answered: address-dependent, else
 *                                                 address and port-dependent
 * A timeout in a mapping test, or a server without OTHER-ADDRESS, ends discovery with an error.
 */
#include <string.h>

#include "stun/stun_int.h"

enum { MAP1 = 0, MAP2, MAP3, FILT2, FILT3, DONE };

const char *tern_stun_nat_name(int behaviour)
{
    switch (behaviour) {
    case TERN_STUN_NAT_NONE: return "no NAT";
    case TERN_STUN_NAT_ENDPOINT_INDEPENDENT: return "endpoint-independent";
    case TERN_STUN_NAT_ADDRESS_DEPENDENT: return "address-dependent";
    case TERN_STUN_NAT_ADDRESS_PORT_DEPENDENT: return "address and port-dependent";
    default: return "unknown";
    }
}

void tern_stun_nat_start(tern_stun_nat *n, uint64_t now, const tern_addr *local,
                         const tern_addr *server, const uint8_t tid_seed[8], uint64_t rto_ns,
                         uint32_t max_tries)
{
    (void)now;
    memset(n, 0, sizeof(*n));
    n->local = *local;
    n->server = *server;
    memcpy(n->tid_base, tid_seed, 8);
    n->rto_ns = rto_ns;
    n->max_tries = max_tries;
    n->step = MAP1;
    n->dest = *server;
}

static void finish(tern_stun_nat *n, int err)
{
    n->step = DONE;
    n->done = 1;
    n->error = err;
}

/* Moves to step, setting up its destination and CHANGE-REQUEST; the transaction restarts. */
static void go(tern_stun_nat *n, int step)
{
    n->step = step;
    n->txn.state = TERN_STUN_TXN_IDLE;
    n->change_flags = 0;
    switch (step) {
    case MAP2:
        n->dest = n->other;
        n->dest.port = n->server.port;
        break;
    case MAP3: n->dest = n->other; break;
    case FILT2:
        n->filtering_phase = 1;
        n->dest = n->server;
        n->change_flags = TERN_STUN_CHANGE_IP | TERN_STUN_CHANGE_PORT;
        break;
    case FILT3:
        n->dest = n->server;
        n->change_flags = TERN_STUN_CHANGE_PORT;
        break;
    default: finish(n, n->error); break;
    }
}

static void on_timeout(tern_stun_nat *n)
{
    if (n->step == FILT2) {
        go(n, FILT3);
    } else if (n->step == FILT3) {
        n->filtering = TERN_STUN_NAT_ADDRESS_PORT_DEPENDENT;
        finish(n, TERN_OK);
    } else {
        finish(n, TERN_ERR_HANDSHAKE_TIMEOUT);
    }
}

int tern_stun_nat_poll(tern_stun_nat *n, uint64_t now, uint8_t *buf, size_t cap, tern_addr *dest)
{
    for (int guard = 0; guard < 4 && !n->done; guard++) {
        if (n->txn.state == TERN_STUN_TXN_IDLE) {
            uint8_t tid[TERN_STUN_TID_LEN];
            memcpy(tid, n->tid_base, 8);
            stun_put_u32(tid + 8, ++n->tid_seq);
            tern_stun_txn_start(&n->txn, now, tid, n->rto_ns, n->max_tries);
        } else {
            int r = tern_stun_txn_expire(&n->txn, now);
            if (r == 0) return 0;
            if (r < 0) {
                on_timeout(n);
                continue;
            }
        }
        *dest = n->dest;
        return tern_stun_binding_request(buf, cap, n->txn.tid, n->change_flags, NULL);
    }
    return 0;
}

int tern_stun_nat_recv(tern_stun_nat *n, uint64_t now, const uint8_t *buf, size_t len)
{
    tern_stun_msg m;
    (void)now;
    if (n->done || tern_stun_txn_recv(&n->txn, buf, len, &m) != TERN_OK) return TERN_ERR_IGNORED;
    if (m.cls == TERN_STUN_CLASS_ERROR) {
        finish(n, TERN_ERR_REFUSED); /* e.g. 420: the server does not do RFC 5780 */
        return TERN_OK;
    }
    tern_addr mapped;
    if (m.present & TERN_STUN_HAS_XOR_MAPPED) mapped = m.xor_mapped;
    else if (m.present & TERN_STUN_HAS_MAPPED) mapped = m.mapped;
    else {
        finish(n, TERN_ERR_PROTOCOL);
        return TERN_OK;
    }
    switch (n->step) {
    case MAP1:
        n->mapped[0] = mapped;
        if (!(m.present & TERN_STUN_HAS_OTHER_ADDRESS) ||
            m.other_address.family != n->server.family) {
            finish(n, TERN_ERR_NOT_FOUND); /* no RFC 5780 support */
            break;
        }
        n->other = m.other_address;
        if (tern_addr_equal(&mapped, &n->local)) {
            n->mapping = TERN_STUN_NAT_NONE;
            go(n, FILT2);
        } else {
            go(n, MAP2);
        }
        break;
    case MAP2:
        n->mapped[1] = mapped;
        if (tern_addr_equal(&mapped, &n->mapped[0])) {
            n->mapping = TERN_STUN_NAT_ENDPOINT_INDEPENDENT;
            go(n, FILT2);
        } else {
            go(n, MAP3);
        }
        break;
    case MAP3:
        n->mapped[2] = mapped;
        n->mapping = tern_addr_equal(&mapped, &n->mapped[1])
                         ? TERN_STUN_NAT_ADDRESS_DEPENDENT
                         : TERN_STUN_NAT_ADDRESS_PORT_DEPENDENT;
        go(n, FILT2);
        break;
    case FILT2:
        n->filtering = TERN_STUN_NAT_ENDPOINT_INDEPENDENT;
        finish(n, TERN_OK);
        break;
    case FILT3:
        n->filtering = TERN_STUN_NAT_ADDRESS_DEPENDENT;
        finish(n, TERN_OK);
        break;
    default: return TERN_ERR_IGNORED;
    }
    return TERN_OK;
}

uint64_t tern_stun_nat_deadline(const tern_stun_nat *n)
{
    if (n->done) return TERN_TIME_NEVER;
    if (n->txn.state == TERN_STUN_TXN_IDLE) return 0;
    return tern_stun_txn_deadline(&n->txn);
}
