/* STUN codec, responder, client transaction and NAT discovery: RFC 5769 vectors and behaviour. */
#include <string.h>

#include "tern/stun.h"
#include "support/tt.h"

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (; *s; s++) {
        int v;
        if (*s >= '0' && *s <= '9') v = *s - '0';
        else if (*s >= 'a' && *s <= 'f') v = *s - 'a' + 10;
        else continue;
        if (hi < 0) hi = v;
        else {
            if (n < cap) out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    return n;
}

/* RFC 5769 2.1-2.3 (short-term password below). */
static const char *req_hex =
    "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
    "00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36"
    "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
    "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
    "80 28 00 04 e5 7a 3b cf";
static const char *resp4_hex =
    "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 08 00 01 a1 47 e1 12 a6 43"
    "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
    "80 28 00 04 c0 7d 4c 96";
static const char *resp6_hex =
    "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
    "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
    "80 28 00 04 c8 fb 0b 4c";
static const char *pwd = "VOkJxbRl1RmTxUk/WvJxBt";

static void test_rfc5769_request(void)
{
    uint8_t b[256];
    size_t n = unhex(req_hex, b, sizeof(b));
    tern_stun_msg m;
    TT_REQUIRE(tern_stun_decode(&m, b, n, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.method, TERN_STUN_METHOD_BINDING);
    TT_CHECK_EQ_INT(m.cls, TERN_STUN_CLASS_REQUEST);
    TT_CHECK(m.present & TERN_STUN_HAS_FINGERPRINT);
    TT_CHECK(m.present & TERN_STUN_HAS_INTEGRITY);
    TT_CHECK_EQ_INT(m.username_len, 9);
    TT_CHECK(memcmp(m.username, "evtj:h6vY", 9) == 0);
    TT_CHECK_EQ_INT(m.software_len, 16);
    TT_CHECK_EQ_INT(m.n_unknown, 0); /* PRIORITY known, ICE-CONTROLLED optional */
    TT_CHECK_EQ_INT(tern_stun_check_integrity(&m, (const uint8_t *)pwd, strlen(pwd)), TERN_OK);
    TT_CHECK_EQ_INT(tern_stun_check_integrity(&m, (const uint8_t *)"x", 1), TERN_ERR_AUTH);
    b[30] ^= 1; /* inside SOFTWARE: the FINGERPRINT no longer matches */
    TT_CHECK_EQ_INT(tern_stun_decode(&m, b, n, 0), TERN_ERR_AUTH);
    TT_CHECK_EQ_INT(m.drop, TERN_STUN_DROP_BAD_FINGERPRINT);
}

static void test_rfc5769_responses(void)
{
    uint8_t b[256];
    char txt[64];
    tern_stun_msg m;
    size_t n = unhex(resp4_hex, b, sizeof(b));
    TT_REQUIRE(tern_stun_decode(&m, b, n, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.cls, TERN_STUN_CLASS_SUCCESS);
    TT_CHECK(m.present & TERN_STUN_HAS_XOR_MAPPED);
    TT_CHECK(strcmp(tern_addr_format(&m.xor_mapped, txt, sizeof(txt)), "192.0.2.1:32853") == 0);
    TT_CHECK_EQ_INT(tern_stun_check_integrity(&m, (const uint8_t *)pwd, strlen(pwd)), TERN_OK);
    n = unhex(resp6_hex, b, sizeof(b));
    TT_REQUIRE(tern_stun_decode(&m, b, n, 0) == TERN_OK);
    TT_CHECK(strcmp(tern_addr_format(&m.xor_mapped, txt, sizeof(txt)),
                    "[2001:db8:1234:5678:11:2233:4455:6677]:32853") == 0);
    TT_CHECK_EQ_INT(tern_stun_check_integrity(&m, (const uint8_t *)pwd, strlen(pwd)), TERN_OK);
}

/* Rebuilding the RFC 5769 IPv4 response with the builder gives the same bytes. */
static void test_builder_matches_rfc(void)
{
    uint8_t want[256], got[256];
    size_t n = unhex(resp4_hex, want, sizeof(want));
    tern_stun_builder b;
    tern_addr a;
    TT_REQUIRE(tern_addr_parse(&a, "192.0.2.1:32853") == TERN_OK);
    tern_stun_build_init(&b, got, sizeof(got), TERN_STUN_METHOD_BINDING,
                         TERN_STUN_CLASS_SUCCESS, want + 8, 1, NULL);
    tern_stun_add_attr(&b, TERN_STUN_ATTR_SOFTWARE, "test vector", 11);
    /* the RFC pads with spaces; ours pads with zeros: patch the byte to compare the rest */
    tern_stun_add_addr(&b, TERN_STUN_ATTR_XOR_MAPPED_ADDRESS, &a);
    got[20 + 4 + 11] = 0x20;
    tern_stun_add_integrity(&b, (const uint8_t *)pwd, strlen(pwd));
    tern_stun_add_fingerprint(&b);
    TT_CHECK_EQ_INT(tern_stun_build_finish(&b), (int)n);
    TT_CHECK(memcmp(got, want, n) == 0);
    /* MESSAGE-INTEGRITY-SHA256 round trip */
    tern_stun_build_init(&b, got, sizeof(got), TERN_STUN_METHOD_BINDING,
                         TERN_STUN_CLASS_REQUEST, want + 8, 1, NULL);
    tern_stun_add_attr(&b, TERN_STUN_ATTR_USERNAME, "u", 1);
    tern_stun_add_integrity_sha256(&b, (const uint8_t *)"k", 1);
    tern_stun_add_fingerprint(&b);
    int len = tern_stun_build_finish(&b);
    tern_stun_msg m;
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, got, (size_t)len, 0) == TERN_OK);
    TT_CHECK(m.present & TERN_STUN_HAS_INTEGRITY_SHA256);
    TT_CHECK_EQ_INT(tern_stun_check_integrity(&m, (const uint8_t *)"k", 1), TERN_OK);
    TT_CHECK_EQ_INT(tern_stun_check_integrity(&m, (const uint8_t *)"j", 1), TERN_ERR_AUTH);
    /* a builder that runs out of room reports it */
    tern_stun_build_init(&b, got, 24, TERN_STUN_METHOD_BINDING, 0, want + 8, 1, NULL);
    tern_stun_add_fingerprint(&b);
    TT_CHECK_EQ_INT(tern_stun_build_finish(&b), TERN_ERR_BUFFER);
}

static const uint8_t tid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static int respond(tern_stun_server *s, uint64_t now, const char *local, const char *remote,
                   const uint8_t *in, size_t n, uint8_t *out, size_t cap, tern_stun_reply *r)
{
    tern_addr l, rm;
    tern_addr_parse(&l, local);
    tern_addr_parse(&rm, remote);
    return tern_stun_server_respond(s, now, &l, &rm, 0, in, n, out, cap, r);
}

static void test_responder_binding(void)
{
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    TT_REQUIRE(tern_stun_server_init(&s, &cfg) == TERN_OK);
    uint8_t req[64], out[600];
    char txt[64];
    tern_stun_reply r;
    tern_stun_msg m;
    int n = tern_stun_binding_request(req, sizeof(req), tid, 0, NULL);
    TT_REQUIRE(n == 28);
    int len = respond(&s, 0, "127.0.0.1:3478", "10.1.2.3:4000", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0);
    TT_REQUIRE(tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.cls, TERN_STUN_CLASS_SUCCESS);
    TT_CHECK(memcmp(m.tid, tid, 12) == 0);
    TT_CHECK(strcmp(tern_addr_format(&m.xor_mapped, txt, sizeof(txt)), "10.1.2.3:4000") == 0);
    TT_CHECK(strcmp(tern_addr_format(&m.response_origin, txt, sizeof(txt)), "127.0.0.1:3478") == 0);
    TT_CHECK(m.present & TERN_STUN_HAS_FINGERPRINT);
    TT_CHECK(m.present & TERN_STUN_HAS_SOFTWARE);
    TT_CHECK(!(m.present & TERN_STUN_HAS_OTHER_ADDRESS));
    /* IPv6 */
    len = respond(&s, 0, "[::1]:3478", "[2001:db8::7]:9", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK(strcmp(tern_addr_format(&m.xor_mapped, txt, sizeof(txt)), "[2001:db8::7]:9") == 0);
    TT_CHECK_EQ_U64(s.counters.tx_success, 2);
    /* SOFTWARE and FINGERPRINT can be left out */
    cfg.software = NULL;
    cfg.fingerprint = 0;
    tern_stun_server_init(&s, &cfg);
    len = respond(&s, 0, "0.0.0.0:3478", "10.1.2.3:4000", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK(!(m.present & (TERN_STUN_HAS_SOFTWARE | TERN_STUN_HAS_FINGERPRINT)));
    TT_CHECK(!(m.present & TERN_STUN_HAS_RESPONSE_ORIGIN)); /* unspecified local address */
    TT_CHECK_EQ_INT(len, 32);
}

static void test_responder_rfc3489(void)
{
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    tern_stun_server_init(&s, &cfg);
    uint8_t req[20] = {0x00, 0x01, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef}, out[600];
    memcpy(req + 8, tid, 12);
    tern_stun_reply r;
    tern_stun_msg m;
    char txt[64];
    int len = respond(&s, 0, "127.0.0.1:3478", "10.1.2.3:4000", req, 20, out, sizeof(out), &r);
    TT_REQUIRE(len > 0);
    TT_CHECK(memcmp(out + 4, req + 4, 16) == 0); /* the whole 128-bit ID is echoed */
    TT_REQUIRE(tern_stun_decode(&m, out, (size_t)len, 1) == TERN_OK);
    TT_CHECK(!m.has_cookie);
    TT_CHECK(m.present & TERN_STUN_HAS_MAPPED);
    TT_CHECK(!(m.present & (TERN_STUN_HAS_XOR_MAPPED | TERN_STUN_HAS_FINGERPRINT)));
    TT_CHECK(strcmp(tern_addr_format(&m.mapped, txt, sizeof(txt)), "10.1.2.3:4000") == 0);
    TT_CHECK(strcmp(tern_addr_format(&m.source_address, txt, sizeof(txt)), "127.0.0.1:3478") == 0);
    TT_CHECK_EQ_U64(s.counters.tx_rfc3489, 1);
    /* refused when RFC 3489 is switched off */
    cfg.allow_rfc3489 = 0;
    tern_stun_server_init(&s, &cfg);
    TT_CHECK(respond(&s, 0, "127.0.0.1:3478", "10.1.2.3:4000", req, 20, out, sizeof(out), &r) < 0);
    TT_CHECK_EQ_U64(s.counters.drop[TERN_STUN_DROP_NO_COOKIE], 1);
}

static void test_responder_420(void)
{
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    tern_stun_server_init(&s, &cfg);
    uint8_t req[64], out[600];
    tern_stun_builder b;
    tern_stun_reply r;
    tern_stun_msg m;
    tern_stun_build_init(&b, req, sizeof(req), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_u32(&b, 0x7777, 1);                 /* unknown, comprehension-required */
    tern_stun_add_u32(&b, 0xC001, 1);                 /* unknown, optional: ignored */
    tern_stun_add_u32(&b, TERN_STUN_ATTR_RESPONSE_ADDRESS, 1); /* RFC 3489 only: not honoured */
    int n = tern_stun_build_finish(&b);
    int len = respond(&s, 0, "127.0.0.1:3478", "10.1.2.3:4000", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.cls, TERN_STUN_CLASS_ERROR);
    TT_CHECK_EQ_INT(m.error_code, 420);
    TT_REQUIRE(m.unknown_attrs_len == 4);
    TT_CHECK(m.unknown_attrs[0] == 0x77 && m.unknown_attrs[1] == 0x77);
    TT_CHECK(m.unknown_attrs[2] == 0x00 && m.unknown_attrs[3] == 0x02);
    TT_CHECK(!(m.present & TERN_STUN_HAS_XOR_MAPPED));
    /* CHANGE-REQUEST with no alternate address: 420 naming CHANGE-REQUEST */
    n = tern_stun_binding_request(req, sizeof(req), tid, TERN_STUN_CHANGE_PORT, NULL);
    len = respond(&s, 0, "127.0.0.1:3478", "10.1.2.3:4000", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.error_code, 420);
    TT_CHECK(m.unknown_attrs_len == 2 && m.unknown_attrs[1] == 0x03);
    /* CHANGE-REQUEST with zero flags is fine */
    n = tern_stun_build_finish(&b);
    tern_stun_build_init(&b, req, sizeof(req), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_u32(&b, TERN_STUN_ATTR_CHANGE_REQUEST, 0);
    n = tern_stun_build_finish(&b);
    len = respond(&s, 0, "127.0.0.1:3478", "10.1.2.3:4000", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.cls, TERN_STUN_CLASS_SUCCESS);
    TT_CHECK_EQ_U64(s.counters.tx_error, 2);
}

static void test_responder_rate_limit(void)
{
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    cfg.error_rate = 10;
    cfg.error_burst = 5;
    tern_stun_server_init(&s, &cfg);
    uint8_t req[64], out[600];
    tern_stun_reply r;
    int n = tern_stun_binding_request(req, sizeof(req), tid, TERN_STUN_CHANGE_IP, NULL);
    int sent = 0;
    for (int i = 0; i < 50; i++)
        if (respond(&s, 1000, "127.0.0.1:3478", "10.1.2.3:4000", req, (size_t)n, out, 600, &r) > 0)
            sent++;
    TT_CHECK_EQ_INT(sent, 5);
    TT_CHECK_EQ_U64(s.counters.drop[TERN_STUN_DROP_RATE_LIMITED], 45);
    /* another source has its own bucket */
    TT_CHECK(respond(&s, 1000, "127.0.0.1:3478", "10.9.9.9:4000", req, (size_t)n, out, 600, &r) > 0);
    /* 10 per second: after 300 ms, 3 more */
    sent = 0;
    for (int i = 0; i < 10; i++)
        if (respond(&s, 1000 + 300 * TERN_NS_PER_MS, "127.0.0.1:3478", "10.1.2.3:4000", req,
                    (size_t)n, out, 600, &r) > 0)
            sent++;
    TT_CHECK_EQ_INT(sent, 3);
    /* success responses are never limited */
    n = tern_stun_binding_request(req, sizeof(req), tid, 0, NULL);
    for (int i = 0; i < 100; i++)
        TT_CHECK(respond(&s, 2000, "127.0.0.1:3478", "10.1.2.3:4000", req, (size_t)n, out, 600, &r) > 0);
}

static void test_responder_auth(void)
{
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    cfg.username = "evtj:h6vY";
    cfg.password = pwd;
    tern_stun_server_init(&s, &cfg);
    uint8_t req[256], out[600];
    tern_stun_reply r;
    tern_stun_msg m;
    size_t n = unhex(req_hex, req, sizeof(req));
    int len = respond(&s, 0, "127.0.0.1:3478", "192.0.2.1:32853", req, n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.cls, TERN_STUN_CLASS_SUCCESS);
    TT_CHECK(m.present & TERN_STUN_HAS_INTEGRITY);
    TT_CHECK_EQ_INT(tern_stun_check_integrity(&m, (const uint8_t *)pwd, strlen(pwd)), TERN_OK);
    /* no credentials: 400; wrong password: 401 */
    int k = tern_stun_binding_request(req, sizeof(req), tid, 0, NULL);
    len = respond(&s, 0, "127.0.0.1:3478", "192.0.2.1:1", req, (size_t)k, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.error_code, 400);
    tern_stun_builder b;
    tern_stun_build_init(&b, req, sizeof(req), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_attr(&b, TERN_STUN_ATTR_USERNAME, "evtj:h6vY", 9);
    tern_stun_add_integrity_sha256(&b, (const uint8_t *)"wrong", 5);
    k = tern_stun_build_finish(&b);
    len = respond(&s, 0, "127.0.0.1:3478", "192.0.2.1:1", req, (size_t)k, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.error_code, 401);
    tern_stun_build_init(&b, req, sizeof(req), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_attr(&b, TERN_STUN_ATTR_USERNAME, "evtj:h6vY", 9);
    tern_stun_add_integrity_sha256(&b, (const uint8_t *)pwd, strlen(pwd));
    k = tern_stun_build_finish(&b);
    len = respond(&s, 0, "127.0.0.1:3478", "192.0.2.1:1", req, (size_t)k, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK_EQ_INT(m.cls, TERN_STUN_CLASS_SUCCESS);
    TT_CHECK(m.present & TERN_STUN_HAS_INTEGRITY_SHA256);
    TT_CHECK_EQ_INT(tern_stun_check_integrity(&m, (const uint8_t *)pwd, strlen(pwd)), TERN_OK);
}

static void test_responder_rfc5780(void)
{
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    cfg.has_alternate = 1;
    tern_addr_parse(&cfg.primary, "127.0.0.1:3478");
    tern_addr_parse(&cfg.alternate, "127.0.0.2:3479");
    TT_REQUIRE(tern_stun_server_init(&s, &cfg) == TERN_OK);
    uint8_t req[1500], out[1500];
    tern_stun_reply r;
    tern_stun_msg m;
    char txt[64];
    int n = tern_stun_binding_request(req, sizeof(req), tid, TERN_STUN_CHANGE_IP | TERN_STUN_CHANGE_PORT, NULL);
    int len = respond(&s, 0, "127.0.0.1:3478", "10.0.0.1:5", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK(strcmp(tern_addr_format(&r.from, txt, sizeof(txt)), "127.0.0.2:3479") == 0);
    TT_CHECK(strcmp(tern_addr_format(&m.response_origin, txt, sizeof(txt)), "127.0.0.2:3479") == 0);
    TT_CHECK(strcmp(tern_addr_format(&m.other_address, txt, sizeof(txt)), "127.0.0.1:3478") == 0);
    n = tern_stun_binding_request(req, sizeof(req), tid, TERN_STUN_CHANGE_PORT, NULL);
    len = respond(&s, 0, "127.0.0.1:3478", "10.0.0.1:5", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK(strcmp(tern_addr_format(&r.from, txt, sizeof(txt)), "127.0.0.1:3479") == 0);
    TT_CHECK(strcmp(tern_addr_format(&m.other_address, txt, sizeof(txt)), "127.0.0.2:3478") == 0);
    TT_CHECK_EQ_U64(s.counters.change_requests, 2);
    /* RESPONSE-PORT redirects only the port */
    tern_stun_builder b;
    tern_stun_build_init(&b, req, sizeof(req), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_u32(&b, TERN_STUN_ATTR_RESPONSE_PORT, 7000u << 16);
    n = tern_stun_build_finish(&b);
    len = respond(&s, 0, "127.0.0.1:3478", "10.0.0.1:5", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0);
    TT_CHECK(strcmp(tern_addr_format(&r.to, txt, sizeof(txt)), "10.0.0.1:7000") == 0);
    /* PADDING: the response is padded, but never longer than the request */
    tern_stun_build_init(&b, req, sizeof(req), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_attr(&b, TERN_STUN_ATTR_PADDING, NULL, 400);
    n = tern_stun_build_finish(&b);
    len = respond(&s, 0, "127.0.0.1:3478", "10.0.0.1:5", req, (size_t)n, out, sizeof(out), &r);
    TT_REQUIRE(len > 0 && tern_stun_decode(&m, out, (size_t)len, 0) == TERN_OK);
    TT_CHECK(m.present & TERN_STUN_HAS_PADDING);
    TT_CHECK_RANGE(len, n - 60, n);
    /* a huge PADDING over IPv4: the response stays within 548 bytes */
    tern_stun_build_init(&b, req, sizeof(req), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_attr(&b, TERN_STUN_ATTR_PADDING, NULL, 1400);
    n = tern_stun_build_finish(&b);
    len = respond(&s, 0, "127.0.0.1:3478", "10.0.0.1:5", req, (size_t)n, out, sizeof(out), &r);
    TT_CHECK_RANGE(len, 400, TERN_STUN_MAX_RESP_V4);
}

static void test_txn_timing(void)
{
    tern_stun_txn t;
    uint64_t ms = TERN_NS_PER_MS;
    tern_stun_txn_start(&t, 0, tid, 0, 0);
    /* RFC 8489 6.2.1: sends at 0, 500, 1500, 3500, 7500, 15500, 31500; fails at 39500 */
    static const uint64_t at[] = {500, 1500, 3500, 7500, 15500, 31500};
    for (size_t i = 0; i < 6; i++) {
        TT_CHECK_EQ_U64(tern_stun_txn_deadline(&t), at[i] * ms);
        TT_CHECK_EQ_INT(tern_stun_txn_expire(&t, at[i] * ms - 1), 0);
        TT_CHECK_EQ_INT(tern_stun_txn_expire(&t, at[i] * ms), 1);
    }
    TT_CHECK_EQ_INT(t.sent, 7);
    TT_CHECK_EQ_U64(tern_stun_txn_deadline(&t), 39500 * ms);
    TT_CHECK_EQ_INT(tern_stun_txn_expire(&t, 39500 * ms), TERN_ERR_HANDSHAKE_TIMEOUT);
    TT_CHECK_EQ_U64(tern_stun_txn_deadline(&t), TERN_TIME_NEVER);
    /* a matching response ends it; another ID is ignored */
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    tern_stun_server_init(&s, &cfg);
    uint8_t req[64], out[600];
    tern_stun_reply r;
    tern_stun_msg m;
    uint8_t other[12] = {9};
    int n = tern_stun_binding_request(req, sizeof(req), other, 0, NULL);
    int len = respond(&s, 0, "127.0.0.1:3478", "10.0.0.1:5", req, (size_t)n, out, sizeof(out), &r);
    tern_stun_txn_start(&t, 0, tid, 0, 0);
    TT_CHECK_EQ_INT(tern_stun_txn_recv(&t, out, (size_t)len, &m), TERN_ERR_IGNORED);
    n = tern_stun_binding_request(req, sizeof(req), tid, 0, NULL);
    len = respond(&s, 0, "127.0.0.1:3478", "10.0.0.1:5", req, (size_t)n, out, sizeof(out), &r);
    TT_CHECK_EQ_INT(tern_stun_txn_recv(&t, out, (size_t)len, &m), TERN_OK);
    TT_CHECK_EQ_INT(t.state, TERN_STUN_TXN_DONE);
}

/* NAT discovery against the in-process responder behind a simulated NAT. */
typedef struct {
    int mapping, filtering; /* TERN_STUN_NAT_* the simulated NAT has */
} sim_nat;

static int run_discovery(const sim_nat *nat, tern_stun_nat *n)
{
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    cfg.has_alternate = 1;
    tern_addr_parse(&cfg.primary, "198.51.100.1:3478");
    tern_addr_parse(&cfg.alternate, "198.51.100.2:3479");
    tern_stun_server_init(&s, &cfg);
    tern_addr local, server;
    tern_addr_parse(&local, "10.0.0.2:5000");
    tern_addr_parse(&server, "198.51.100.1:3478");
    uint8_t seed[8] = {7, 7, 7, 7, 7, 7, 7, 7};
    tern_stun_nat_start(n, 0, &local, &server, seed, 100 * TERN_NS_PER_MS, 3);
    tern_addr sent_to[8];
    int n_sent_to = 0;
    uint64_t now = 0;
    int fresh = 0;
    for (int step = 0; step < 200 && !n->done; step++) {
        if (n->filtering_phase && !fresh) {
            fresh = 1; /* a new socket: no filter opened yet */
            n_sent_to = 0;
        }
        uint8_t req[600], out[600];
        tern_addr dest;
        int len = tern_stun_nat_poll(n, now, req, sizeof(req), &dest);
        if (len > 0) {
            /* the NAT's public mapping for this destination */
            tern_addr pub;
            tern_addr_parse(&pub, "203.0.113.9:40000");
            if (nat->mapping == TERN_STUN_NAT_NONE) pub = local;
            else if (nat->mapping == TERN_STUN_NAT_ADDRESS_DEPENDENT) pub.port += dest.ip[3];
            else if (nat->mapping == TERN_STUN_NAT_ADDRESS_PORT_DEPENDENT)
                pub.port += (uint16_t)(dest.ip[3] * 10 + dest.port % 10);
            if (n_sent_to < 8) sent_to[n_sent_to++] = dest;
            tern_stun_reply r;
            int rl = tern_stun_server_respond(&s, now, &dest, &pub, 0, req, (size_t)len, out,
                                              sizeof(out), &r);
            if (rl > 0) {
                int pass = 1; /* filtering: has the client sent to r.from (or its IP)? */
                if (nat->filtering != TERN_STUN_NAT_ENDPOINT_INDEPENDENT &&
                    nat->mapping != TERN_STUN_NAT_NONE) {
                    pass = 0;
                    for (int i = 0; i < n_sent_to; i++) {
                        int same_ip = memcmp(sent_to[i].ip, r.from.ip, 4) == 0;
                        if (same_ip && (nat->filtering == TERN_STUN_NAT_ADDRESS_DEPENDENT ||
                                        sent_to[i].port == r.from.port))
                            pass = 1;
                    }
                }
                if (pass) tern_stun_nat_recv(n, now, out, (size_t)rl);
            }
            continue;
        }
        uint64_t d = tern_stun_nat_deadline(n);
        if (d == TERN_TIME_NEVER) break;
        now = d > now ? d : now;
    }
    return n->done;
}

static void test_nat_discovery(void)
{
    static const sim_nat cases[] = {
        {TERN_STUN_NAT_NONE, TERN_STUN_NAT_ENDPOINT_INDEPENDENT},
        {TERN_STUN_NAT_ENDPOINT_INDEPENDENT, TERN_STUN_NAT_ENDPOINT_INDEPENDENT},
        {TERN_STUN_NAT_ENDPOINT_INDEPENDENT, TERN_STUN_NAT_ADDRESS_DEPENDENT},
        {TERN_STUN_NAT_ADDRESS_DEPENDENT, TERN_STUN_NAT_ADDRESS_PORT_DEPENDENT},
        {TERN_STUN_NAT_ADDRESS_PORT_DEPENDENT, TERN_STUN_NAT_ADDRESS_PORT_DEPENDENT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tern_stun_nat n;
        TT_REQUIRE(run_discovery(&cases[i], &n));
        TT_CHECK_EQ_INT(n.error, TERN_OK);
        TT_CHECK_MSG(n.mapping == cases[i].mapping, "case %zu mapping %s", i,
                     tern_stun_nat_name(n.mapping));
        TT_CHECK_MSG(n.filtering == cases[i].filtering, "case %zu filtering %s", i,
                     tern_stun_nat_name(n.filtering));
    }
}

static const tt_case cases[] = {
    TT_CASE(test_rfc5769_request),    TT_CASE(test_rfc5769_responses),
    TT_CASE(test_builder_matches_rfc), TT_CASE(test_responder_binding),
    TT_CASE(test_responder_rfc3489),  TT_CASE(test_responder_420),
    TT_CASE(test_responder_rate_limit), TT_CASE(test_responder_auth),
    TT_CASE(test_responder_rfc5780),  TT_CASE(test_txn_timing),
    TT_CASE(test_nat_discovery),      {NULL, NULL},
};

int main(int argc, char **argv)
{
    return tt_main(argc, argv, cases);
}
