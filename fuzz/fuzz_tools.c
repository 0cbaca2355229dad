/*
 * libFuzzer target for the tern command's parsers of peer input (src/tools/peer_text.c): the
 * input is what a sender or a group member controls. It goes through tern recv's path (the
 * transfer header, then the file-name check and the escaped name it prints), tern send's
 * (the receiver's verdict, escaped), tern chat's (a group message escaped; the line splitter
 * over the input cut in pieces). Checked: an escaped text fits its buffer and holds no control
 * byte; a name the check accepts has no '/', no leading '.', no "..", no control byte, and is
 * printed unchanged; the splitter's lines fit their buffer, hold no '\n' and, joined, give back
 * the input (minus the '\r' before each '\n' and the bytes past a line's cap).
 */
#include <stdlib.h>
#include <string.h>

#include "tools/peer_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char esc[4 * 70000 + 16];

static void check_escaped(size_t cap)
{
    size_t n = strlen(esc);
    if (n >= cap) abort();
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)esc[i] < 0x20 || esc[i] == 0x7f) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 70000) return 0;
    /* escaping: into a buffer of a size the input picks, and into the largest */
    size_t cap = size ? 16 + data[0] : 16;
    tools_text_escape(esc, cap, data, size);
    check_escaped(cap);
    tools_text_escape(esc, sizeof(esc), data, size);
    check_escaped(sizeof(esc));

    /* tern recv: a header, then its name */
    uint64_t fsize;
    const uint8_t *name;
    size_t nl;
    const char *why;
    if (xfer_parse_header(data, size, &fsize, &name, &nl, &why) == 0) {
        if (name + nl != data + size || nl > TOOLS_NAME_MAX) abort();
    } else if (why == NULL) {
        abort();
    }
    /* the whole input as a name */
    if (tools_name_problem(data, size) == NULL) {
        if (size == 0 || size > TOOLS_NAME_MAX || data[0] == '.' || memchr(data, '/', size) ||
            memchr(data, 0, size))
            abort();
        for (size_t i = 0; i + 1 < size; i++)
            if (data[i] == '.' && data[i + 1] == '.') abort();
        tools_text_escape(esc, sizeof(esc), data, size);
        if (strlen(esc) != size || memcmp(esc, data, size) != 0) abort();
    }
    /* tern send: a verdict */
    int st;
    const uint8_t *t;
    size_t tl;
    if (xfer_parse_verdict(data, size, &st, &t, &tl) == 0) {
        if (t + tl != data + size || st < 0 || st > 255) abort();
        tools_text_escape(esc, 600, t, tl);
        check_escaped(600);
    }
    /* tern chat: stdin lines, fed in pieces the first byte sizes */
    static char line[64];
    static uint8_t joined[70000];
    size_t ll = 0, jl = 0, off = 0, piece = size ? 1 + data[0] % 17 : 1;
    while (off < size) {
        size_t take = size - off < piece ? size - off : piece;
        size_t used = 0;
        while (used < take) {
            int done;
            size_t u = chat_lines_feed(line, sizeof(line), &ll, (const char *)data + off + used,
                                       take - used, &done);
            if (u == 0 || u > take - used || ll > sizeof(line)) abort();
            used += u;
            if (done) {
                if (memchr(line, '\n', ll)) abort();
                memcpy(joined + jl, line, ll);
                jl += ll;
                joined[jl++] = '\n';
                ll = 0;
            }
        }
        off += take;
    }
    /* reference: split the input at '\n', cut each line at the cap, drop a final '\r' */
    size_t rl = 0, cur = 0, start = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '\n') continue;
        size_t n = i - start < sizeof(line) ? i - start : sizeof(line);
        if (n > 0 && data[start + n - 1] == '\r') n--;
        if (cur + n + 1 > jl || memcmp(joined + cur, data + start, n) != 0 || joined[cur + n] != '\n')
            abort();
        cur += n + 1;
        rl++;
        start = i + 1;
    }
    if (cur != jl) abort();
    (void)rl;
    return 0;
}
