/*
 * libFuzzer target for the relay (tern/relay.h): a relay with a few sessions gets a stream of
 * datagrams from sources the input chooses. The input is a sequence of records: a selector byte
 * (which peer address sends, or a stranger; whether to stamp a live channel into the header; how
 * far the clock moves) and a length byte, then that many datagram bytes; a length byte of 0xff
 * also introduces that record's pair again first. A forward must never
 * return more than it was given, must send a forwarded datagram only to the other side of the
 * session whose channel it carried, from that session's own side, and the session count must
 * stay within what was opened.
 */
#include <stdlib.h>
#include <string.h>

#include "tern/relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NS 4

static void fixed_rand(uint8_t *dst, size_t len, void *user)
{
    uint64_t *st = user;
    for (size_t i = 0; i < len; i++) {
        *st = *st * 6364136223846793005ull + 1442695040888963407ull;
        dst[i] = (uint8_t)(*st >> 56);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t seed = 1;
    tern_relay_config cfg;
    tern_relay_config_default(&cfg);
    cfg.rand = fixed_rand;
    cfg.rand_user = &seed;
    cfg.idle_timeout_ns = 1000000000ull;
    cfg.burst_bytes = 20000;
    cfg.rate_bytes_per_s = 1000000;
    tern_relay *r;
    if (tern_relay_new(&cfg, &r) != TERN_OK) abort();
    tern_addr peer[NS][2];
    uint8_t ch[NS][2][TERN_RELAY_CHANNEL_LEN];
    for (int i = 0; i < NS; i++) {
        tern_addr_ipv4(&peer[i][0], 10, 0, 0, (uint8_t)i, 1000);
        tern_addr_ipv4(&peer[i][1], 10, 0, 1, (uint8_t)i, 1000);
        if (tern_relay_open(r, 0, &peer[i][0], &peer[i][1], ch[i][0], ch[i][1]) != TERN_OK)
            abort();
    }
    static uint8_t buf[2048];
    uint64_t now = 0;
    size_t off = 0;
    while (off + 2 <= size) {
        uint8_t sel = data[off], len = data[off + 1];
        off += 2;
        size_t n = len * 8u + (sel & 7u); /* up to 2047 bytes */
        if (n > size - off) n = size - off;
        memcpy(buf, data + off, n);
        off += n;
        int sess = (sel >> 3) & (NS - 1), side = (sel >> 5) & 1;
        tern_addr from = peer[sess][side];
        if (sel & 0x40) from.port++; /* a stranger next door */
        if ((sel & 0x80) && n >= TERN_RELAY_HDR_LEN) {
            buf[0] = TERN_RELAY_TYPE;
            memcpy(buf + 1, ch[sess][side], TERN_RELAY_CHANNEL_LEN);
        }
        now += (uint64_t)(sel & 7) * 100000000ull; /* 0..0.7 s */
        if (len == 0xff) { /* introduce the pair again: the same channels, or new ones if it expired */
            uint8_t c0[TERN_RELAY_CHANNEL_LEN], c1[TERN_RELAY_CHANNEL_LEN];
            int o = tern_relay_open(r, now, &peer[sess][side], &peer[sess][!side], c0, c1);
            if (o == TERN_OK) {
                memcpy(ch[sess][side], c0, sizeof(c0));
                memcpy(ch[sess][!side], c1, sizeof(c1));
            } else if (o != TERN_ERR_NOMEM) {
                abort();
            }
        }
        tern_addr to;
        int rc = tern_relay_forward(r, now, &from, buf, n, &to);
        if (rc > (int)n) abort();
        if (rc >= 0) {
            if (rc != (int)n || n > TERN_MAX_DATAGRAM) abort();
            int found = 0;
            for (int i = 0; i < NS; i++)
                for (int s = 0; s < 2; s++)
                    if (tern_addr_equal(&from, &peer[i][s]) && tern_addr_equal(&to, &peer[i][!s]) &&
                        memcmp(buf + 1, ch[i][!s], TERN_RELAY_CHANNEL_LEN) == 0)
                        found = 1;
            if (!found) abort();
        }
        if (tern_relay_next_deadline(r) <= now) tern_relay_handle_expiry(r, now);
        tern_relay_stats st;
        tern_relay_get_stats(r, &st);
        if (st.sessions > NS) abort();
    }
    tern_relay_del(r);
    return 0;
}
