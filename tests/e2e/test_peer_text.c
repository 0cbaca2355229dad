/*
 * Unit test of src/tools/peer_text.c: the file-name check of tern recv, the escaping of peer
 * text for terminals, tern send's header and verdict parsers and tern chat's line splitter.
 * Besides fixed cases, 200,000 random byte strings: an escaped text never holds a byte below
 * 0x20 or DEL, is always UTF-8 with none of the code points the check refuses, fits its buffer,
 * and a name the check accepts is printed unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/peer_text.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static const char *problem(const char *s)
{
    return tools_name_problem((const uint8_t *)s, strlen(s));
}

static void test_names(void)
{
    static const char *good[] = {"a.txt", "report 2026.pdf", "ok-\xc3\xa9.txt", "x.tar.gz",
                                 "\xe6\x97\xa5\xe6\x9c\xac.txt", "emoji-\xf0\x9f\x98\x80", "a",
                                 "trailing.", "a.b.c", "-dash"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(problem(good[i]) == NULL, "refused good name %s: %s", good[i], problem(good[i]));
    static const char *bad[] = {
        "", ".", "..", ".hidden", "..a", "a/b", "/etc/passwd", "../x", "a\\b", "a..b", "x..",
        "a\nreceived evil", "a\rb", "a\tb", "\x1b[2J", "a\x7f", "a\xc2\x9b" "b", /* C1 CSI */
        "a\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
        "\xf8\x88\x80\x80\x80", "x\xe2\x80\xae" "txt.exe", /* RLO */ "a\xe2\x80\xa8" "b",
        "a\xe2\x81\xa6" "b", "a\xd8\x9c" "b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(problem(bad[i]) != NULL, "accepted bad name #%zu", i);
    CHECK(tools_name_problem((const uint8_t *)"a\0b", 3) != NULL, "accepted a NUL");
    CHECK(tools_name_problem(NULL, 0) != NULL, "accepted nothing");
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    CHECK(tools_name_problem((const uint8_t *)longname, 255) == NULL, "refused 255 bytes");
    CHECK(tools_name_problem((const uint8_t *)longname, 256) != NULL, "accepted 256 bytes");
}

static void expect_escape(const char *in, size_t len, const char *want)
{
    char out[256];
    tools_text_escape(out, sizeof(out), (const uint8_t *)in, len);
    CHECK(strcmp(out, want) == 0, "escape gave \"%s\", not \"%s\"", out, want);
}

static void test_escape(void)
{
    expect_escape("plain text", 10, "plain text");
    expect_escape("a\nb", 3, "a\\nb");
    expect_escape("a\r\tb", 4, "a\\r\\tb");
    expect_escape("\x1b[31mred", 8, "\\x1b[31mred");
    expect_escape("a\0b", 3, "a\\x00b");
    expect_escape("del\x7f", 4, "del\\x7f");
    expect_escape("\xff\xfe", 2, "\\xff\\xfe");
    expect_escape("\xc3\xa9t\xc3\xa9", 5, "\xc3\xa9t\xc3\xa9");
    expect_escape("\xc2\x9b" "2J", 4, "\\u{009b}2J");
    expect_escape("\xe2\x80\xae" "abc", 6, "\\u{202e}abc");
    expect_escape("\xe2\x82", 2, "\\xe2\\x82"); /* cut short */
    expect_escape("\xc0\xaf", 2, "\\xc0\\xaf");  /* overlong */
    expect_escape("back\\slash", 10, "back\\slash");
    /* truncation: "..." at a character boundary, within cap */
    char out[16];
    tools_text_escape(out, sizeof(out), (const uint8_t *)"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                                        "\xc3\xa9\xc3\xa9",
                      14);
    CHECK(strlen(out) < sizeof(out) && strcmp(out + strlen(out) - 3, "...") == 0 &&
              tools_name_problem((const uint8_t *)out, strlen(out) - 3) == NULL,
          "truncation: \"%s\"", out);
    tools_text_escape(out, sizeof(out), (const uint8_t *)"\n\n\n\n\n\n\n\n", 8);
    CHECK(strcmp(out, "\\n\\n\\n\\n\\n\\n...") == 0, "truncation of escapes: \"%s\"", out);
}

/* Property checks on random bytes. */
static void test_random(void)
{
    static uint8_t in[600];
    static char out[4 * 600 + 16];
    uint64_t x = 88172645463325252ull;
    for (int iter = 0; iter < 200000; iter++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = (size_t)(x % 40);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* mostly ASCII and the lead/continuation bytes of UTF-8 */
            uint8_t b = (uint8_t)(x >> 11);
            in[i] = (x & 3) == 0 ? (uint8_t)(0x80 | (b & 0x3f)) : (x & 3) == 1 ? b : (uint8_t)(b & 0x7f);
        }
        size_t cap = 16 + (size_t)(x >> 40) % (sizeof(out) - 16);
        tools_text_escape(out, cap, in, len);
        size_t ol = strlen(out);
        CHECK(ol < cap, "escape overflowed its buffer");
        /* no control bytes; the whole output passes the name check's character rules
         * ('/' and "..", '.' and '\\' aside, which are printable) */
        int bad = 0;
        for (size_t i = 0; i < ol; i++) bad |= (uint8_t)out[i] < 0x20 || out[i] == 0x7f;
        CHECK(!bad, "a control byte in escaped output");
        for (size_t i = 0; i < ol; i++)
            if (out[i] == '/' || out[i] == '.' || out[i] == '\\') out[i] = '_';
        CHECK(ol == 0 || tools_name_problem((const uint8_t *)out, ol) == NULL ||
                  ol > TOOLS_NAME_MAX,
              "escaped output is not clean UTF-8: %s", tools_name_problem((const uint8_t *)out, ol));
        /* an accepted name prints unchanged */
        if (tools_name_problem(in, len) == NULL) {
            tools_text_escape(out, sizeof(out), in, len);
            CHECK(strlen(out) == len && memcmp(out, in, len) == 0, "accepted name altered");
        }
    }
}

static void test_header_verdict_lines(void)
{
    uint8_t h[12 + 300];
    const uint8_t *name;
    size_t nl;
    uint64_t size;
    const char *why;
    memset(h, 0, sizeof(h));
    h[0] = 'H', h[1] = 2;
    h[2] = 0x01, h[9] = 0x02; /* size 0x0100000000000002 */
    h[10] = 0, h[11] = 5;
    memcpy(h + 12, "a.txt", 5);
    CHECK(xfer_parse_header(h, 17, &size, &name, &nl, &why) == 0 && size == 0x0100000000000002ull &&
              nl == 5 && memcmp(name, "a.txt", 5) == 0,
          "valid header");
    CHECK(xfer_parse_header(h, 16, &size, &name, &nl, &why) != 0, "short name accepted");
    CHECK(xfer_parse_header(h, 18, &size, &name, &nl, &why) != 0, "trailing byte accepted");
    CHECK(xfer_parse_header(h, 11, &size, &name, &nl, &why) != 0, "truncated header accepted");
    h[1] = 1;
    CHECK(xfer_parse_header(h, 17, &size, &name, &nl, &why) != 0, "version 1 accepted");
    h[1] = 2, h[10] = 1, h[11] = 0; /* 256 */
    CHECK(xfer_parse_header(h, 12 + 256, &size, &name, &nl, &why) != 0, "a 256-byte name");

    int st;
    const uint8_t *t;
    size_t tl;
    CHECK(xfer_parse_verdict((const uint8_t *)"V\x02no", 4, &st, &t, &tl) == 0 && st == 2 &&
              tl == 2,
          "verdict");
    CHECK(xfer_parse_verdict((const uint8_t *)"V", 1, &st, &t, &tl) != 0, "short verdict");
    CHECK(xfer_parse_verdict((const uint8_t *)"X\x00", 2, &st, &t, &tl) != 0, "not a verdict");

    char line[8];
    size_t ll = 0;
    int done;
    const char *in = "ab\r\ncd\nlonger than eight\nz";
    size_t len = strlen(in), off = 0;
    const char *want[] = {"ab", "cd", "longer t"};
    for (int k = 0; k < 3; k++) {
        off += chat_lines_feed(line, sizeof(line), &ll, in + off, len - off, &done);
        CHECK(done && ll == strlen(want[k]) && memcmp(line, want[k], ll) == 0, "line %d", k);
        ll = 0;
    }
    off += chat_lines_feed(line, sizeof(line), &ll, in + off, len - off, &done);
    CHECK(!done && off == len && ll == 1 && line[0] == 'z', "partial line kept");
}

int main(void)
{
    test_names();
    test_escape();
    test_random();
    test_header_verdict_lines();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("peer text: names, escapes, header, verdict, chat lines: ok\n");
    return 0;
}
