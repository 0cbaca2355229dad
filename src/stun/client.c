/*
 * STUN client side: the Binding request writer and the client transaction's retransmission timer
 * (RFC 8489 6.2.1: RTO 500 ms doubling after each send, Rc = 7 sends, then Rm x RTO of waiting,
 * so a lost server is declared after 39.5 s). The caller owns the socket and the clock.
 */
#include <string.h>

#include "stun/stun_int.h"

int tern_stun_binding_request(uint8_t *buf, size_t cap, const uint8_t tid[TERN_STUN_TID_LEN],
                              uint32_t change_flags, const char *software)
{
    tern_stun_builder b;
    tern_stun_build_init(&b, buf, cap, TERN_STUN_METHOD_BINDING, TERN_STUN_CLASS_REQUEST, tid, 1,
                         NULL);
    if (change_flags) tern_stun_add_u32(&b, TERN_STUN_ATTR_CHANGE_REQUEST, change_flags);
    if (software) tern_stun_add_attr(&b, TERN_STUN_ATTR_SOFTWARE, software, strlen(software));
    tern_stun_add_fingerprint(&b);
    return tern_stun_build_finish(&b);
}

void tern_stun_txn_start(tern_stun_txn *t, uint64_t now, const uint8_t tid[TERN_STUN_TID_LEN],
                         uint64_t rto_ns, uint32_t max_tries)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->tid, tid, TERN_STUN_TID_LEN);
    t->rto_ns = rto_ns ? rto_ns : TERN_STUN_RTO_NS;
    t->max_tries = max_tries ? max_tries : TERN_STUN_RC;
    t->last_wait_mult = TERN_STUN_RM;
    t->sent = 1;
    t->cur_rto_ns = t->rto_ns;
    t->next_ns = now + (t->max_tries == 1 ? t->rto_ns * t->last_wait_mult : t->rto_ns);
    t->state = TERN_STUN_TXN_WAITING;
}

uint64_t tern_stun_txn_deadline(const tern_stun_txn *t)
{
    return t->state == TERN_STUN_TXN_WAITING ? t->next_ns : TERN_TIME_NEVER;
}

int tern_stun_txn_expire(tern_stun_txn *t, uint64_t now)
{
    if (t->state == TERN_STUN_TXN_TIMEOUT) return TERN_ERR_HANDSHAKE_TIMEOUT;
    if (t->state != TERN_STUN_TXN_WAITING || now < t->next_ns) return 0;
    if (t->sent >= t->max_tries) {
        t->state = TERN_STUN_TXN_TIMEOUT;
        return TERN_ERR_HANDSHAKE_TIMEOUT;
    }
    t->sent++;
    t->cur_rto_ns *= 2;
    /* after the last send, wait Rm x the initial RTO (RFC 8489 6.2.1) */
    t->next_ns += t->sent == t->max_tries ? t->rto_ns * t->last_wait_mult : t->cur_rto_ns;
    if (t->next_ns <= now) t->next_ns = now + 1;
    return 1;
}

int tern_stun_txn_recv(tern_stun_txn *t, const uint8_t *buf, size_t len, tern_stun_msg *m)
{
    int rc = tern_stun_decode(m, buf, len, 0);
    if (rc != TERN_OK) return rc;
    if (t->state != TERN_STUN_TXN_WAITING || m->method != TERN_STUN_METHOD_BINDING ||
        (m->cls != TERN_STUN_CLASS_SUCCESS && m->cls != TERN_STUN_CLASS_ERROR) ||
        memcmp(m->tid, t->tid, TERN_STUN_TID_LEN) != 0)
        return TERN_ERR_IGNORED;
    t->state = TERN_STUN_TXN_DONE;
    return TERN_OK;
}
