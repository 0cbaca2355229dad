/*
 * The bad-input corpus: every input here must be dropped by the responder with no response
 * written, and counted under the expected TERN_STUN_DROP_* reason. `test_stun_badinput
 * --write-corpus DIR` also writes every input (and some valid ones) as fuzzing seeds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/tt.h"
#include "tern/stun.h"

static const uint8_t tid[12] = {0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 1, 2, 3, 4, 5, 6};
static const char *corpus_dir;
static int corpus_n;

static void save(const char *tag, const uint8_t *p, size_t n)
{
    if (corpus_dir == NULL) return;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s-%03d", corpus_dir, tag, corpus_n++);
    FILE *f = fopen(path, "wb");
    if (f == NULL) return;
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

/* Feeds one input to a fresh responder; checks it is dropped for the expected reason. */
static void expect_drop(const char *what, const uint8_t *in, size_t n, int reason, int rfc3489)
{
    static tern_stun_server s;
    tern_stun_server_config cfg;
    tern_stun_server_config_default(&cfg);
    cfg.allow_rfc3489 = rfc3489;
    tern_stun_server_init(&s, &cfg);
    tern_addr local, remote;
    tern_addr_parse(&local, "127.0.0.1:3478");
    tern_addr_parse(&remote, "127.0.0.1:40000");
    uint8_t out[1600];
    memset(out, 0xee, sizeof(out));
    tern_stun_reply r;
    int rc = tern_stun_server_respond(&s, 0, &local, &remote, 0, in, n, out, sizeof(out), &r);
    TT_CHECK_MSG(rc < 0, "%s: answered (%d bytes)", what, rc);
    TT_CHECK_MSG(s.counters.drop[reason] == 1, "%s: drop[%s] = %llu", what,
                 tern_stun_drop_name(reason), (unsigned long long)s.counters.drop[reason]);
    uint64_t total = 0;
    for (int i = 0; i < TERN_STUN_DROP_COUNT; i++) total += s.counters.drop[i];
    TT_CHECK_MSG(total == 1, "%s: %llu drops counted", what, (unsigned long long)total);
    TT_CHECK(s.counters.tx_success == 0 && s.counters.tx_error == 0);
    TT_CHECK_MSG(out[0] == 0xee && out[19] == 0xee, "%s: output buffer written", what);
    save("bad", in, n);
}

/* A valid Binding request with SOFTWARE and FINGERPRINT. */
static size_t valid_request(uint8_t *buf, size_t cap)
{
    int n = tern_stun_binding_request(buf, cap, tid, 0, "tern corpus");
    return n > 0 ? (size_t)n : 0;
}

static void test_truncation_every_length(void)
{
    uint8_t full[128];
    size_t n = valid_request(full, sizeof(full));
    TT_REQUIRE(n == 44);
    save("ok", full, n);
    for (size_t len = 0; len < n; len++) {
        char what[48];
        snprintf(what, sizeof(what), "truncated to %zu", len);
        /* below 20 bytes or short of the length field: truncated */
        expect_drop(what, full, len, TERN_STUN_DROP_TRUNCATED, 1);
    }
}

static void test_tiny_datagrams(void)
{
    uint8_t b[21] = {0};
    for (size_t len = 0; len <= 20; len++) {
        for (size_t i = 0; i < len; i++) b[i] = (uint8_t)(0x5a + 37 * i);
        if (len == 20) b[0] = 0xc0; /* 20 bytes: a header whose first two bits are not zero */
        expect_drop("tiny", b, len, len < 20 ? TERN_STUN_DROP_TRUNCATED : TERN_STUN_DROP_BAD_HEADER, 1);
    }
}

static size_t header(uint8_t *b, uint16_t type, uint16_t len, int cookie)
{
    b[0] = (uint8_t)(type >> 8);
    b[1] = (uint8_t)type;
    b[2] = (uint8_t)(len >> 8);
    b[3] = (uint8_t)len;
    b[4] = cookie ? 0x21 : 0x11;
    b[5] = cookie ? 0x12 : 0x22;
    b[6] = cookie ? 0xa4 : 0x33;
    b[7] = cookie ? 0x42 : 0x44;
    memcpy(b + 8, tid, 12);
    return 20;
}

static size_t attr(uint8_t *b, size_t off, uint16_t type, uint16_t len, const uint8_t *v, size_t vlen)
{
    b[off] = (uint8_t)(type >> 8);
    b[off + 1] = (uint8_t)type;
    b[off + 2] = (uint8_t)(len >> 8);
    b[off + 3] = (uint8_t)len;
    if (vlen) memcpy(b + off + 4, v, vlen);
    return off + 4 + ((vlen + 3) & ~(size_t)3);
}

static void set_len(uint8_t *b, size_t total)
{
    b[2] = (uint8_t)((total - 20) >> 8);
    b[3] = (uint8_t)(total - 20);
}

static void test_bad_lengths(void)
{
    uint8_t b[256] = {0};
    static const uint8_t v8[8] = {0, 1, 0x12, 0x34, 1, 2, 3, 4};
    /* attribute length past the end */
    size_t n = header(b, 0x0001, 0, 1);
    n = attr(b, n, TERN_STUN_ATTR_SOFTWARE, 100, v8, 8);
    set_len(b, n);
    expect_drop("attr past end", b, n, TERN_STUN_DROP_BAD_ATTR, 1);
    /* only part of an attribute header */
    n = header(b, 0x0001, 0, 1);
    b[20] = 0x80; b[21] = 0x22;
    set_len(b, 24);
    b[22] = 0; b[23] = 1; /* length 1 but no padding space */
    expect_drop("attr padding past end", b, 24, TERN_STUN_DROP_BAD_ATTR, 1);
    /* message length not a multiple of 4 */
    n = header(b, 0x0001, 6, 1);
    expect_drop("len % 4", b, 26, TERN_STUN_DROP_BAD_HEADER, 1);
    /* message length beyond the datagram */
    n = header(b, 0x0001, 40, 1);
    expect_drop("len beyond datagram", b, 40, TERN_STUN_DROP_TRUNCATED, 1);
    /* trailing bytes after the message */
    n = header(b, 0x0001, 0, 1);
    expect_drop("trailing bytes", b, 24, TERN_STUN_DROP_BAD_HEADER, 1);
    /* IPv6 family with an IPv4 length, in XOR-MAPPED-ADDRESS and MAPPED-ADDRESS */
    uint8_t v6in4[8] = {0, 2, 0x12, 0x34, 1, 2, 3, 4};
    n = header(b, 0x0001, 0, 1);
    n = attr(b, n, TERN_STUN_ATTR_XOR_MAPPED_ADDRESS, 8, v6in4, 8);
    set_len(b, n);
    expect_drop("ipv6 family, ipv4 length", b, n, TERN_STUN_DROP_BAD_ATTR, 1);
    n = header(b, 0x0001, 0, 1);
    n = attr(b, n, TERN_STUN_ATTR_MAPPED_ADDRESS, 8, v6in4, 8);
    set_len(b, n);
    expect_drop("ipv6 family, ipv4 length (mapped)", b, n, TERN_STUN_DROP_BAD_ATTR, 1);
    uint8_t fam3[8] = {0, 3, 0x12, 0x34, 1, 2, 3, 4};
    n = header(b, 0x0001, 0, 1);
    n = attr(b, n, TERN_STUN_ATTR_OTHER_ADDRESS, 8, fam3, 8);
    set_len(b, n);
    expect_drop("unknown family", b, n, TERN_STUN_DROP_BAD_ATTR, 1);
    /* CHANGE-REQUEST of the wrong size, RESPONSE-PORT 0, bad ERROR-CODE class */
    n = header(b, 0x0001, 0, 1);
    n = attr(b, n, TERN_STUN_ATTR_CHANGE_REQUEST, 8, v8, 8);
    set_len(b, n);
    expect_drop("change-request len 8", b, n, TERN_STUN_DROP_BAD_ATTR, 1);
    static const uint8_t zero4[4] = {0};
    n = header(b, 0x0001, 0, 1);
    n = attr(b, n, TERN_STUN_ATTR_RESPONSE_PORT, 4, zero4, 4);
    set_len(b, n);
    expect_drop("response-port 0", b, n, TERN_STUN_DROP_BAD_ATTR, 1);
    static const uint8_t ec[4] = {0, 0, 9, 1};
    n = header(b, 0x0001, 0, 1);
    n = attr(b, n, TERN_STUN_ATTR_ERROR_CODE, 4, ec, 4);
    set_len(b, n);
    expect_drop("error-code class 9", b, n, TERN_STUN_DROP_BAD_ATTR, 1);
}

static void test_cookie_and_fingerprint(void)
{
    uint8_t b[256];
    tern_stun_builder bl;
    /* no magic cookie, RFC 3489 disabled */
    size_t n = header(b, 0x0001, 0, 0);
    expect_drop("no cookie", b, n, TERN_STUN_DROP_NO_COOKIE, 0);
    /* no magic cookie but a FINGERPRINT: not an RFC 3489 message */
    n = valid_request(b, sizeof(b));
    b[4] = 0x11;
    expect_drop("no cookie + fingerprint", b, n, TERN_STUN_DROP_NO_COOKIE, 1);
    /* wrong FINGERPRINT */
    n = valid_request(b, sizeof(b));
    b[n - 1] ^= 0x01;
    expect_drop("wrong fingerprint", b, n, TERN_STUN_DROP_BAD_FINGERPRINT, 1);
    /* FINGERPRINT not last */
    tern_stun_build_init(&bl, b, sizeof(b), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_fingerprint(&bl);
    tern_stun_add_attr(&bl, TERN_STUN_ATTR_SOFTWARE, "late", 4);
    n = (size_t)tern_stun_build_finish(&bl);
    expect_drop("fingerprint not last", b, n, TERN_STUN_DROP_BAD_FINGERPRINT, 1);
    /* FINGERPRINT of the wrong length */
    n = header(b, 0x0001, 0, 1);
    static const uint8_t v8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    n = attr(b, n, TERN_STUN_ATTR_FINGERPRINT, 8, v8, 8);
    set_len(b, n);
    expect_drop("fingerprint len 8", b, n, TERN_STUN_DROP_BAD_FINGERPRINT, 1);
    /* an attribute after MESSAGE-INTEGRITY */
    tern_stun_build_init(&bl, b, sizeof(b), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_integrity(&bl, (const uint8_t *)"k", 1);
    tern_stun_add_attr(&bl, TERN_STUN_ATTR_SOFTWARE, "late", 4);
    n = (size_t)tern_stun_build_finish(&bl);
    expect_drop("attr after integrity", b, n, TERN_STUN_DROP_MISPLACED, 1);
    /* two MESSAGE-INTEGRITY; MESSAGE-INTEGRITY after MESSAGE-INTEGRITY-SHA256 */
    tern_stun_build_init(&bl, b, sizeof(b), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_integrity(&bl, (const uint8_t *)"k", 1);
    tern_stun_add_integrity(&bl, (const uint8_t *)"k", 1);
    n = (size_t)tern_stun_build_finish(&bl);
    expect_drop("two integrity", b, n, TERN_STUN_DROP_MISPLACED, 1);
    tern_stun_build_init(&bl, b, sizeof(b), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_integrity_sha256(&bl, (const uint8_t *)"k", 1);
    tern_stun_add_integrity(&bl, (const uint8_t *)"k", 1);
    n = (size_t)tern_stun_build_finish(&bl);
    expect_drop("integrity after sha256", b, n, TERN_STUN_DROP_MISPLACED, 1);
    /* MESSAGE-INTEGRITY of the wrong length */
    n = header(b, 0x0001, 0, 1);
    n = attr(b, n, TERN_STUN_ATTR_MESSAGE_INTEGRITY, 8, v8, 8);
    set_len(b, n);
    expect_drop("integrity len 8", b, n, TERN_STUN_DROP_BAD_ATTR, 1);
}

static void test_many_attributes(void)
{
    /* 500 empty attributes fit in 2048 bytes: more than TERN_STUN_MAX_ATTRS */
    static uint8_t b[70000];
    size_t n = header(b, 0x0001, 0, 1);
    for (int i = 0; i < 500; i++) n = attr(b, n, 0x8030, 0, NULL, 0);
    set_len(b, n);
    expect_drop("500 attributes", b, n, TERN_STUN_DROP_TOO_MANY_ATTRS, 1);
    /* 16000 attributes: a 64 KB datagram, refused before the walk */
    n = header(b, 0x0001, 0, 1);
    for (int i = 0; i < 16000; i++) n = attr(b, n, 0x8030, 0, NULL, 0);
    b[2] = (uint8_t)((n - 20) >> 8);
    b[3] = (uint8_t)(n - 20);
    expect_drop("16000 attributes", b, n, TERN_STUN_DROP_TOO_LARGE, 1);
}

static void test_not_requests(void)
{
    uint8_t b[64];
    size_t n = header(b, 0x0011, 0, 1); /* Binding indication */
    expect_drop("indication", b, n, TERN_STUN_DROP_NOT_REQUEST, 1);
    n = header(b, 0x0101, 0, 1); /* Binding success response: never answered (no loops) */
    expect_drop("response", b, n, TERN_STUN_DROP_NOT_REQUEST, 1);
    n = header(b, 0x0003, 0, 1); /* TURN Allocate */
    expect_drop("allocate", b, n, TERN_STUN_DROP_NOT_REQUEST, 1);
}

/* Seeds for the fuzzer that the responder accepts. */
static void test_valid_seeds(void)
{
    uint8_t b[600];
    tern_stun_builder bl;
    int n = tern_stun_binding_request(b, sizeof(b), tid, TERN_STUN_CHANGE_IP | TERN_STUN_CHANGE_PORT, NULL);
    TT_CHECK(n > 0);
    save("ok", b, (size_t)n);
    tern_stun_build_init(&bl, b, sizeof(b), TERN_STUN_METHOD_BINDING, 0, tid, 1, NULL);
    tern_stun_add_attr(&bl, TERN_STUN_ATTR_USERNAME, "user", 4);
    tern_stun_add_attr(&bl, TERN_STUN_ATTR_PADDING, NULL, 64);
    tern_stun_add_u32(&bl, TERN_STUN_ATTR_RESPONSE_PORT, 9000u << 16);
    tern_stun_add_integrity(&bl, (const uint8_t *)"pass", 4);
    tern_stun_add_integrity_sha256(&bl, (const uint8_t *)"pass", 4);
    tern_stun_add_fingerprint(&bl);
    n = tern_stun_build_finish(&bl);
    tern_stun_msg m;
    TT_CHECK(n > 0 && tern_stun_decode(&m, b, (size_t)n, 1) == TERN_OK);
    save("ok", b, (size_t)n);
    tern_addr a;
    tern_addr_parse(&a, "[2001:db8::1]:443");
    tern_stun_build_init(&bl, b, sizeof(b), TERN_STUN_METHOD_BINDING, TERN_STUN_CLASS_SUCCESS, tid, 1, NULL);
    tern_stun_add_addr(&bl, TERN_STUN_ATTR_XOR_MAPPED_ADDRESS, &a);
    tern_stun_add_addr(&bl, TERN_STUN_ATTR_OTHER_ADDRESS, &a);
    tern_stun_add_error(&bl, 420, NULL);
    uint16_t u[2] = {0x7777, 0x0002};
    tern_stun_add_unknown(&bl, u, 2);
    tern_stun_add_fingerprint(&bl);
    n = tern_stun_build_finish(&bl);
    TT_CHECK(n > 0 && tern_stun_decode(&m, b, (size_t)n, 1) == TERN_OK);
    save("ok", b, (size_t)n);
}

static const tt_case cases[] = {
    TT_CASE(test_truncation_every_length), TT_CASE(test_tiny_datagrams),
    TT_CASE(test_bad_lengths),             TT_CASE(test_cookie_and_fingerprint),
    TT_CASE(test_many_attributes),         TT_CASE(test_not_requests),
    TT_CASE(test_valid_seeds),             {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) {
        corpus_dir = argv[2];
        return tt_main(1, argv, cases);
    }
    return tt_main(argc, argv, cases);
}
