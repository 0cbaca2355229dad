/*
 * White-box tests of the core's building blocks: varints, packet-number reconstruction, headers,
 * frames, transport parameters, the replay window, the AEAD (both ciphers, integrity-only) and
 * the Noise IK handshake in isolation. (The map, heap and rate limits under them are base's:
 * test_base, test_rate.)
 */
#include <sodium.h>
#include <string.h>

#include "core/crypto.h"
#include "core/noise.h"
#include "core/packet.h"
#include "core/util.h"
#include "support/tt.h"

static void test_varint(void)
{
    static const uint64_t vals[] = {0, 1, 63, 64, 16383, 16384, (1ull << 30) - 1, 1ull << 30,
                                    TERN__VARINT_MAX};
    uint8_t buf[8];
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint8_t *e = tern__put_varint(buf, buf + sizeof(buf), vals[i]);
        TT_REQUIRE(e != NULL);
        TT_CHECK_EQ_U64((size_t)(e - buf), tern__varint_len(vals[i]));
        uint64_t v = 0;
        TT_CHECK(tern__get_varint(buf, e, &v) == e);
        TT_CHECK_EQ_U64(v, vals[i]);
        /* every truncation fails */
        for (uint8_t *t = buf; t < e; t++) TT_CHECK(tern__get_varint(buf, t, &v) == NULL);
    }
    TT_CHECK(tern__put_varint(buf, buf + 8, TERN__VARINT_MAX + 1) == NULL);
    TT_CHECK(tern__put_varint(buf, buf + 1, 64) == NULL);
    /* RFC 9000 A.1 examples */
    static const uint8_t ex[] = {0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c};
    uint64_t v;
    tern__get_varint(ex, ex + 8, &v);
    TT_CHECK_EQ_U64(v, 151288809941952652ull);
    static const uint8_t ex2[] = {0x7b, 0xbd};
    tern__get_varint(ex2, ex2 + 2, &v);
    TT_CHECK_EQ_U64(v, 15293);
}

static void test_pn_decode(void)
{
    /* RFC 9000 A.3 example: largest 0xa82f30ea, truncated 0x9b32 in 2 bytes -> 0xa82f9b32 */
    TT_CHECK_EQ_U64(tern__pn_decode(0xa82f30ea, 1, 0x9b32, 2), 0xa82f9b32ull);
    TT_CHECK_EQ_U64(tern__pn_decode(0, 0, 5, 4), 5);
    TT_CHECK_EQ_U64(tern__pn_decode(255, 1, 0, 1), 256);
    TT_CHECK_EQ_U64(tern__pn_decode(1000, 1, 990 & 0xff, 1), 990);
    for (uint64_t largest = 0; largest < 100000; largest += 997)
        for (uint64_t d = 0; d < 100; d++) {
            uint64_t pn = largest + 1 + d - (d > 50 && largest >= 60 ? 60 : 0);
            TT_CHECK_EQ_U64(tern__pn_decode(largest, 1, pn & 0xffffffff, 4), pn);
        }
}

static void test_headers_and_frames(void)
{
    uint8_t buf[200], dcid[8] = {1, 2, 3, 4, 5, 6, 7, 8}, scid[8] = {9};
    uint8_t *p = tern__long_encode_prefix(buf, buf + sizeof(buf), TERN__PKT_REJECT,
                                          TERN__VERSION_1, dcid, scid);
    p = tern__put_varint(p, buf + sizeof(buf), TERN__REJECT_WRONG_KEY);
    p = tern__put_bytes(p, buf + sizeof(buf), "hinthint", 8);
    tern__long_hdr h;
    TT_CHECK_EQ_INT(tern__long_decode(buf, (size_t)(p - buf), &h), TERN_OK);
    TT_CHECK_EQ_INT(h.type, TERN__PKT_REJECT);
    TT_CHECK(memcmp(h.dcid, dcid, 8) == 0 && memcmp(h.scid, scid, 8) == 0);
    TT_CHECK_EQ_U64(h.reject_code, 1);
    TT_CHECK_EQ_INT(tern__long_decode(buf, (size_t)(p - buf) - 1, &h), TERN_ERR_TRUNCATED);
    TT_CHECK_EQ_INT(tern__long_decode(buf, (size_t)(p - buf) + 0, &h), TERN_OK);
    buf[4] = 2; /* another version */
    TT_CHECK_EQ_INT(tern__long_decode(buf, (size_t)(p - buf), &h), TERN_ERR_VERSION);

    p = tern__short_encode(buf, buf + sizeof(buf), 0, dcid, 0x1234567, 4);
    TT_REQUIRE(p != NULL);
    memset(p, 0, 17);
    tern__short_hdr sh;
    TT_CHECK_EQ_INT(tern__short_decode(buf, (size_t)(p - buf) + 17, &sh), TERN_OK);
    TT_CHECK_EQ_U64(sh.pn_truncated, 0x1234567);
    TT_CHECK_EQ_U64(sh.hdr_len, 13);
    TT_CHECK_EQ_INT(tern__short_decode(buf, (size_t)(p - buf) + 16, &sh), TERN_ERR_TRUNCATED);

    uint8_t *f = buf, *end = buf + sizeof(buf);
    f = tern__frame_put_ping(f, end, TERN__FRAME_PING, 77);
    f = tern__frame_put_close(f, end, 1, 99, (const uint8_t *)"why", 3);
    f = tern__frame_put_datagram(f, end, (const uint8_t *)"data", 4);
    const uint8_t *q = buf;
    tern__frame fr;
    int err = 0;
    q = tern__frame_decode(q, f, &fr, &err);
    TT_CHECK(q && fr.type == TERN__FRAME_PING && fr.id == 77);
    q = tern__frame_decode(q, f, &fr, &err);
    TT_CHECK(q && fr.type == TERN__FRAME_CLOSE && fr.close_code == 99 && fr.data_len == 3);
    q = tern__frame_decode(q, f, &fr, &err);
    TT_CHECK(q == f && fr.type == TERN__FRAME_DATAGRAM && memcmp(fr.data, "data", 4) == 0);
    /* a length past the end, an unknown type */
    uint8_t bad[] = {0x30, 0x10, 'x'};
    TT_CHECK(tern__frame_decode(bad, bad + sizeof(bad), &fr, &err) == NULL &&
             err == TERN_ERR_TRUNCATED);
    uint8_t unk[] = {0x2f};
    TT_CHECK(tern__frame_decode(unk, unk + 1, &fr, &err) == NULL && err == TERN_ERR_MALFORMED);
}

static void test_tparams(void)
{
    tern__tparams tp, out;
    memset(&tp, 0, sizeof(tp));
    tp.idle_timeout_ms = 30000;
    tp.max_udp_payload = 1350;
    tp.max_datagram_frame = 1500;
    tp.flow_window = 4096;
    tp.max_flows = 64;
    tp.max_ack_delay_ms = 25;
    tp.aeads[0] = 2;
    tp.aeads[1] = 1;
    tp.n_aeads = 2;
    tp.integrity_only = 1;
    tp.has_reset_token = 1;
    memset(tp.reset_token, 7, 16);
    tp.has_cid = 1;
    memset(tp.cid, 3, 8);
    uint8_t buf[128];
    int n = tern__tparams_encode(&tp, buf, sizeof(buf));
    TT_REQUIRE(n > 0);
    TT_CHECK_EQ_INT(tern__tparams_decode(buf, (size_t)n, &out), TERN_OK);
    TT_CHECK(memcmp(&tp, &out, sizeof(tp)) == 0);
    for (int l = 0; l < n; l++) {
        int rc = tern__tparams_decode(buf, (size_t)l, &out);
        TT_CHECK(rc == TERN_OK || rc == TERN_ERR_TRUNCATED || rc == TERN_ERR_MALFORMED);
    }
    /* a repeated id */
    uint8_t dup[] = {0x01, 0x01, 0x05, 0x01, 0x01, 0x06};
    TT_CHECK_EQ_INT(tern__tparams_decode(dup, sizeof(dup), &out), TERN_ERR_MALFORMED);
    /* an unknown id is skipped */
    uint8_t unk[] = {0x3f, 0x02, 0xaa, 0xbb, 0x01, 0x01, 0x05};
    TT_CHECK_EQ_INT(tern__tparams_decode(unk, sizeof(unk), &out), TERN_OK);
    TT_CHECK_EQ_U64(out.idle_timeout_ms, 5);
    TT_CHECK_EQ_INT(tern__tparams_encode(&tp, buf, 10), TERN_ERR_BUFFER);
}

static void test_replay_window(void)
{
    tern__replay r;
    memset(&r, 0, sizeof(r));
    TT_CHECK_EQ_INT(tern__replay_check(&r, 5), TERN_OK);
    tern__replay_mark(&r, 5);
    TT_CHECK_EQ_INT(tern__replay_check(&r, 5), TERN_ERR_REPLAY);
    TT_CHECK_EQ_INT(tern__replay_check(&r, 4), TERN_OK);
    tern__replay_mark(&r, 2000);
    TT_CHECK_EQ_INT(tern__replay_check(&r, 2000 - TERN__REPLAY_WINDOW), TERN_ERR_REPLAY);
    TT_CHECK_EQ_INT(tern__replay_check(&r, 2000 - TERN__REPLAY_WINDOW + 1), TERN_OK);
    for (uint64_t pn = 1500; pn < 2000; pn += 2) tern__replay_mark(&r, pn);
    for (uint64_t pn = 1500; pn < 2000; pn++)
        TT_CHECK_EQ_INT(tern__replay_check(&r, pn), pn % 2 == 0 ? TERN_ERR_REPLAY : TERN_OK);
}

static void test_aead_both_ciphers(void)
{
    TT_REQUIRE(tern__crypto_init() == TERN_OK);
    uint8_t secret[32] = {5};
    int algs[2] = {TERN__WIRE_CHACHA20POLY1305, TERN__WIRE_AES256GCM};
    for (int i = 0; i < 2; i++) {
        if (algs[i] == TERN__WIRE_AES256GCM && !tern__aes_available()) continue;
        tern__aead tx, rx;
        TT_REQUIRE(tern__aead_init(&tx, algs[i], secret) == TERN_OK);
        TT_REQUIRE(tern__aead_init(&rx, algs[i], secret) == TERN_OK);
        uint8_t pkt[64] = "headerXXXXXXX", out[64];
        const uint8_t msg[] = "the frames";
        TT_CHECK_EQ_INT(tern__aead_seal(&tx, 9, 0, pkt, 13, msg, sizeof(msg), pkt + 13), TERN_OK);
        TT_CHECK_EQ_INT(tern__aead_open(&rx, 9, 0, pkt, 13, pkt + 13, sizeof(msg) + 16, out),
                        TERN_OK);
        TT_CHECK(memcmp(out, msg, sizeof(msg)) == 0);
        TT_CHECK_EQ_INT(tern__aead_open(&rx, 10, 0, pkt, 13, pkt + 13, sizeof(msg) + 16, out),
                        TERN_ERR_AUTH); /* wrong packet number */
        pkt[2] ^= 1;
        TT_CHECK_EQ_INT(tern__aead_open(&rx, 9, 0, pkt, 13, pkt + 13, sizeof(msg) + 16, out),
                        TERN_ERR_AUTH); /* header is authenticated */
        pkt[2] ^= 1;
        /* integrity only: frames stay readable, still authenticated */
        uint8_t ip[64] = "headerXXXXXXX";
        memcpy(ip + 13, msg, sizeof(msg));
        TT_CHECK_EQ_INT(tern__aead_seal(&tx, 11, 1, ip, 13, ip + 13, sizeof(msg), ip + 13), TERN_OK);
        TT_CHECK(memcmp(ip + 13, msg, sizeof(msg)) == 0);
        TT_CHECK_EQ_INT(tern__aead_open(&rx, 11, 1, ip, 13, ip + 13, sizeof(msg) + 16, ip + 13),
                        TERN_OK);
        ip[15] ^= 1;
        TT_CHECK_EQ_INT(tern__aead_open(&rx, 11, 1, ip, 13, ip + 13, sizeof(msg) + 16, ip + 13),
                        TERN_ERR_AUTH);
        tern__aead_wipe(&tx);
        tern__aead_wipe(&rx);
    }
}

static void test_noise_ik(void)
{
    TT_REQUIRE(tern__crypto_init() == TERN_OK);
    tern_keypair srv, cli, evil;
    tern_keypair_generate(&srv);
    tern_keypair_generate(&cli);
    tern_keypair_generate(&evil);
    uint8_t e1[32], e2[32];
    randombytes_buf(e1, 32);
    randombytes_buf(e2, 32);
    tern__noise i, r;
    tern__noise_init(&i, (const uint8_t *)"prologue", 8, srv.pub);
    tern__noise_init(&r, (const uint8_t *)"prologue", 8, srv.pub);
    uint8_t m1[256], m2[256], pl[64];
    size_t pll = 0;
    int n1 = tern__noise_write_msg1(&i, &cli, e1, (const uint8_t *)"hello", 5, m1, sizeof(m1));
    TT_REQUIRE(n1 == TERN__NOISE_MSG1_FIXED + 5);
    TT_CHECK_EQ_INT(tern__noise_read_msg1(&r, &srv, m1, (size_t)n1, pl, sizeof(pl), &pll), TERN_OK);
    TT_CHECK(pll == 5 && memcmp(pl, "hello", 5) == 0);
    TT_CHECK(memcmp(r.rs, cli.pub, 32) == 0); /* the server learned the client's identity */
    int n2 = tern__noise_write_msg2(&r, e2, (const uint8_t *)"world", 5, m2, sizeof(m2));
    TT_REQUIRE(n2 == TERN__NOISE_MSG2_FIXED + 5);
    /* a forged message 2 fails and leaves the state usable */
    uint8_t forged[256];
    memcpy(forged, m2, (size_t)n2);
    forged[40] ^= 1;
    TT_CHECK_EQ_INT(tern__noise_read_msg2(&i, &cli, forged, (size_t)n2, pl, sizeof(pl), &pll),
                    TERN_ERR_AUTH);
    TT_CHECK_EQ_INT(tern__noise_read_msg2(&i, &cli, m2, (size_t)n2, pl, sizeof(pl), &pll), TERN_OK);
    uint8_t a1[32], a2[32], b1[32], b2[32];
    tern__noise_split(&i, a1, a2);
    tern__noise_split(&r, b1, b2);
    TT_CHECK(memcmp(a1, b1, 32) == 0 && memcmp(a2, b2, 32) == 0 && memcmp(a1, a2, 32) != 0);
    /* a responder with another static key cannot read message 1 */
    tern__noise x;
    tern__noise_init(&x, (const uint8_t *)"prologue", 8, evil.pub);
    TT_CHECK_EQ_INT(tern__noise_read_msg1(&x, &evil, m1, (size_t)n1, pl, sizeof(pl), &pll),
                    TERN_ERR_AUTH);
    /* another prologue (CIDs changed in transit) fails too */
    tern__noise y;
    tern__noise_init(&y, (const uint8_t *)"prologuX", 8, srv.pub);
    TT_CHECK_EQ_INT(tern__noise_read_msg1(&y, &srv, m1, (size_t)n1, pl, sizeof(pl), &pll),
                    TERN_ERR_AUTH);
}

static void test_keys_and_addresses(void)
{
    tern_keypair kp;
    TT_CHECK_EQ_INT(tern_keypair_generate(&kp), TERN_OK);
    char hex[65];
    uint8_t back[32];
    tern_hex_encode(kp.pub, 32, hex);
    TT_CHECK_EQ_INT(tern_hex_decode(hex, back, 32), TERN_OK);
    TT_CHECK(memcmp(back, kp.pub, 32) == 0);
    TT_CHECK_EQ_INT(tern_hex_decode("zz", back, 1), TERN_ERR_MALFORMED);
    TT_CHECK_EQ_INT(tern_hex_decode("abc", back, 1), TERN_ERR_MALFORMED);
    tern_addr a;
    char buf[64];
    TT_CHECK_EQ_INT(tern_addr_parse(&a, "192.0.2.1:4433"), TERN_OK);
    TT_CHECK(strcmp(tern_addr_format(&a, buf, sizeof(buf)), "192.0.2.1:4433") == 0);
    TT_CHECK_EQ_INT(tern_addr_parse(&a, "[2001:db8::1]:53"), TERN_OK);
    TT_CHECK(a.family == TERN_AF_INET6 && a.port == 53);
    TT_CHECK(strcmp(tern_addr_format(&a, buf, sizeof(buf)), "[2001:db8::1]:53") == 0);
    TT_CHECK_EQ_INT(tern_addr_parse(&a, "1.2.3.4:99999"), TERN_ERR_MALFORMED);
    TT_CHECK_EQ_INT(tern_addr_parse(&a, "nonsense"), TERN_ERR_MALFORMED);
    TT_CHECK_EQ_INT(tern_addr_parse(&a, "[::1"), TERN_ERR_MALFORMED);
    /* transports: "/tcp" and "/tls" are kept and shown, "/udp" is the default and not shown,
     * and two addresses that differ only in transport are different paths */
    tern_addr b;
    TT_CHECK_EQ_INT(tern_addr_parse(&a, "192.0.2.1:443/tls"), TERN_OK);
    TT_CHECK(a.transport == TERN_TRANSPORT_TLS && a.port == 443 && tern_addr_is_stream(&a));
    TT_CHECK(strcmp(tern_addr_format(&a, buf, sizeof(buf)), "192.0.2.1:443/tls") == 0);
    TT_CHECK_EQ_INT(tern_addr_parse(&b, "192.0.2.1:443/udp"), TERN_OK);
    TT_CHECK(b.transport == TERN_TRANSPORT_UDP && !tern_addr_is_stream(&b));
    TT_CHECK(!tern_addr_equal(&a, &b));
    TT_CHECK(strcmp(tern_addr_format(&b, buf, sizeof(buf)), "192.0.2.1:443") == 0);
    TT_CHECK_EQ_INT(tern_addr_parse(&a, "[2001:db8::1]:4433/tcp"), TERN_OK);
    TT_CHECK(a.transport == TERN_TRANSPORT_TCP && a.family == TERN_AF_INET6);
    TT_CHECK(strcmp(tern_addr_format(&a, buf, sizeof(buf)), "[2001:db8::1]:4433/tcp") == 0);
    TT_CHECK_EQ_INT(tern_addr_parse(&a, "192.0.2.1:443/quic"), TERN_ERR_MALFORMED);
}

static const tt_case cases[] = {
    TT_CASE(test_varint),           TT_CASE(test_pn_decode),
    TT_CASE(test_headers_and_frames), TT_CASE(test_tparams),
    TT_CASE(test_replay_window),
    TT_CASE(test_aead_both_ciphers), TT_CASE(test_noise_ik),
    TT_CASE(test_keys_and_addresses), {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
