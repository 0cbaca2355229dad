/* STUN over TCP: framing and the choice of a victim (see stun_tcp.h). */
#include <string.h>

#include "server/stun_tcp.h"

uint8_t *stun_tcp_space(stun_tcp_stream *st, size_t *cap)
{
    *cap = sizeof(st->buf) - st->fill;
    return st->buf + st->fill;
}

int stun_tcp_input(stun_tcp_stream *st, size_t n, tern_stun_server *srv, uint64_t now,
                   const tern_addr *local, const tern_addr *remote,
                   int (*send)(void *user, const uint8_t *data, size_t len), void *user)
{
    if (n > sizeof(st->buf) - st->fill) return STUN_TCP_CLOSE_MALFORMED; /* caller's error */
    st->fill += n;
    int done = 0;
    size_t off = 0;
    for (;;) {
        int fl = tern_stun_frame_len(st->buf + off, st->fill - off);
        if (fl < 0 || (size_t)fl > sizeof(st->buf)) return STUN_TCP_CLOSE_MALFORMED;
        if (fl == 0 || (size_t)fl > st->fill - off) break;
        uint8_t out[TERN_STUN_MAX_RESP_V6];
        tern_stun_reply rep;
        int rc = tern_stun_server_respond(srv, now, local, remote, 1, st->buf + off, (size_t)fl,
                                          out, sizeof(out), &rep);
        if (rc < 0 && rc != TERN_ERR_RATE_LIMITED && rc != TERN_ERR_IGNORED)
            return STUN_TCP_CLOSE_MALFORMED;
        if (rc > 0 && send(user, out, (size_t)rc) != 0) return STUN_TCP_CLOSE_SEND;
        off += (size_t)fl;
        done++;
    }
    if (off > 0) {
        memmove(st->buf, st->buf + off, st->fill - off);
        st->fill -= off;
    }
    if (st->fill == sizeof(st->buf)) return STUN_TCP_CLOSE_MALFORMED; /* cannot complete */
    return done;
}

int stun_tcp_same_source(const tern_addr *a, const tern_addr *b)
{
    if (a->family != b->family) return 0;
    return memcmp(a->ip, b->ip, a->family == TERN_AF_INET ? 4 : 8) == 0;
}

static uint32_t source_hash(const tern_addr *a)
{
    uint32_t h = 2166136261u ^ a->family;
    size_t k = a->family == TERN_AF_INET ? 4 : 8;
    for (size_t i = 0; i < k; i++) h = (h ^ a->ip[i]) * 16777619u;
    return h;
}

int stun_tcp_pick_victim(const tern_addr *const *src, const uint64_t *last_ns, size_t n,
                         uint32_t *scratch, size_t scratch_len)
{
    if (n == 0) return -1;
    size_t m = 1;
    while (m < 2 * n) m <<= 1;
    if (n > 0xffffffffu / 8 || scratch == NULL || scratch_len < m + 2 * n) {
        size_t v = 0; /* no room to count: the idlest of all */
        for (size_t i = 1; i < n; i++)
            if (last_ns[i] < last_ns[v]) v = i;
        return (int)v;
    }
    /* table[m]: index of the first connection seen of a source (UINT32_MAX: empty);
     * count[i], idlest[i]: for such a first connection i, its source's totals */
    uint32_t *table = scratch, *count = scratch + m, *idlest = scratch + m + n;
    memset(table, 0xff, m * sizeof(*table));
    for (size_t i = 0; i < n; i++) {
        size_t h = source_hash(src[i]) & (m - 1);
        while (table[h] != UINT32_MAX && !stun_tcp_same_source(src[table[h]], src[i]))
            h = (h + 1) & (m - 1);
        if (table[h] == UINT32_MAX) {
            table[h] = (uint32_t)i;
            count[i] = 1;
            idlest[i] = (uint32_t)i;
            continue;
        }
        uint32_t r = table[h];
        count[r]++;
        if (last_ns[i] < last_ns[idlest[r]]) idlest[r] = (uint32_t)i;
    }
    int best = -1;
    for (size_t h = 0; h < m; h++) {
        uint32_t r = table[h];
        if (r == UINT32_MAX) continue;
        if (best < 0 || count[r] > count[best] ||
            (count[r] == count[best] && last_ns[idlest[r]] < last_ns[idlest[best]]))
            best = (int)r;
    }
    return (int)idlest[best];
}
