/*
 * libFuzzer target for ternd's STUN over TCP (src/server/stun_tcp.c): the input is a TCP byte
 * stream, fed to stun_tcp_input in pieces whose sizes come from the input itself (partial
 * reads, several messages per read, messages cut anywhere), and once more in the largest pieces
 * the buffer takes. Both must answer the same messages with the same bytes and close (or not)
 * alike; every answer must decode and fit RFC 8489's size; the buffer never overflows. The
 * first byte also picks whether the victim choice of a full table is checked, on addresses and
 * idle times taken from the input, against a quadratic reference.
 * Input: [flags u8] [piece sizes: n u8, then n bytes] [stream...].
 */
#include <stdlib.h>
#include <string.h>

#include "server/stun_tcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct sink {
    uint8_t out[1 << 16];
    size_t len;
    int fail_after; /* answers accepted before send fails (-1: never) */
    int answers;
} sink;

static int sink_send(void *user, const uint8_t *d, size_t len)
{
    sink *k = user;
    if (len > TERN_STUN_MAX_RESP_V6) abort();
    tern_stun_msg m;
    if (tern_stun_decode(&m, d, len, 1) != TERN_OK) abort();
    if (k->fail_after >= 0 && k->answers >= k->fail_after) return -1;
    k->answers++;
    if (k->len + len <= sizeof(k->out)) {
        memcpy(k->out + k->len, d, len);
        k->len += len;
    }
    return 0;
}

/* Feeds stream in pieces (sizes cycle through pieces[], 0 meaning "all the room there is"). */
static int feed(tern_stun_server *srv, const uint8_t *stream, size_t len, const uint8_t *pieces,
                size_t n_pieces, sink *k, size_t *fill)
{
    static stun_tcp_stream st;
    st.fill = 0;
    tern_addr local, remote;
    tern_addr_parse(&local, "127.0.0.1:3478");
    tern_addr_parse(&remote, "[2001:db8::7]:5000");
    size_t off = 0, pi = 0;
    int rc = 0;
    while (off < len) {
        size_t cap;
        uint8_t *space = stun_tcp_space(&st, &cap);
        if (cap == 0) abort(); /* stun_tcp_input closes before that */
        size_t want = n_pieces ? pieces[pi++ % n_pieces] : 0;
        if (want == 0 || want > cap) want = cap;
        if (want > len - off) want = len - off;
        memcpy(space, stream + off, want);
        off += want;
        rc = stun_tcp_input(&st, want, srv, 0, &local, &remote, sink_send, k);
        if (rc < 0) break;
        if (st.fill > sizeof(st.buf)) abort();
    }
    *fill = st.fill;
    return rc < 0 ? rc : 0;
}

static void check_victim(const uint8_t *d, size_t n)
{
    enum { MAXN = 64 };
    tern_addr addrs[MAXN];
    const tern_addr *src[MAXN];
    uint64_t last[MAXN];
    uint32_t scratch[6 * MAXN];
    size_t cnt = n / 3 > MAXN ? MAXN : n / 3;
    for (size_t i = 0; i < cnt; i++) {
        memset(&addrs[i], 0, sizeof(addrs[i]));
        addrs[i].family = (d[3 * i] & 1) ? TERN_AF_INET6 : TERN_AF_INET;
        addrs[i].ip[0] = d[3 * i] >> 5;      /* few distinct sources */
        addrs[i].ip[9] = d[3 * i + 1];       /* same /64 for IPv6 */
        addrs[i].port = d[3 * i + 1];
        src[i] = &addrs[i];
        last[i] = d[3 * i + 2];
    }
    int v = stun_tcp_pick_victim(src, last, cnt, scratch, sizeof(scratch) / sizeof(scratch[0]));
    if (cnt == 0) {
        if (v != -1) abort();
        return;
    }
    if (v < 0 || (size_t)v >= cnt) abort();
    /* reference: the victim's source holds the most connections, the victim is that source's
     * idlest, and no source as large has an idler connection */
    size_t vc = 0, maxc = 0;
    for (size_t j = 0; j < cnt; j++) vc += stun_tcp_same_source(src[j], src[v]);
    for (size_t i = 0; i < cnt; i++) {
        size_t c = 0;
        for (size_t j = 0; j < cnt; j++) c += stun_tcp_same_source(src[j], src[i]);
        if (c > maxc) maxc = c;
        if (c == vc && last[i] < last[v]) abort();
    }
    if (vc != maxc) abort();
    /* too little scratch: the idlest of all */
    v = stun_tcp_pick_victim(src, last, cnt, scratch, 1);
    for (size_t i = 0; i < cnt; i++)
        if (last[i] < last[v]) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t flags = data[0];
    size_t n_pieces = data[1];
    if (2 + n_pieces > size) n_pieces = size - 2;
    const uint8_t *pieces = data + 2;
    const uint8_t *stream = data + 2 + n_pieces;
    size_t len = size - 2 - n_pieces;
    if (flags & 0x80) check_victim(stream, len);

    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    if (flags & 1) cfg.allow_rfc3489 = 0;
    if (flags & 2) cfg.username = "user", cfg.password = "pass";
    static tern_stun_server a, b;
    static sink ka, kb;
    tern_stun_server_init(&a, &cfg);
    tern_stun_server_init(&b, &cfg);
    ka.len = kb.len = 0;
    ka.answers = kb.answers = 0;
    ka.fail_after = kb.fail_after = (flags & 4) ? (flags >> 3 & 3) : -1;
    size_t fa, fb;
    int ra = feed(&a, stream, len, pieces, n_pieces, &ka, &fa);
    int rb = feed(&b, stream, len, NULL, 0, &kb, &fb);
    if (ra != rb || ka.len != kb.len || memcmp(ka.out, kb.out, ka.len) != 0) abort();
    if (ra == 0 && fa != fb) abort();
    return 0;
}
