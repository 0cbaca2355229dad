/* Checks and escapes for text from the network (see peer_text.h). */
#include <stdio.h>
#include <string.h>

#include "tools/peer_text.h"

/* Length of the UTF-8 sequence at s[0..len) (1..4) with its code point, or 0 when it is not
 * one (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short). */
static size_t utf8_seq(const uint8_t *s, size_t len, uint32_t *cp)
{
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t n;
    uint32_t v;
    uint8_t lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (b >= 0xc2 && b <= 0xdf) {
        n = 2, v = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
        n = 3, v = b & 0x0f;
        if (b == 0xe0) lo = 0xa0;      /* overlong */
        else if (b == 0xed) hi = 0x9f; /* surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4, v = b & 0x07;
        if (b == 0xf0) lo = 0x90;      /* overlong */
        else if (b == 0xf4) hi = 0x8f; /* past U+10FFFF */
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    *cp = v;
    return n;
}

/* Code points a terminal acts on, or that make a line read otherwise than it is. */
static int cp_unsafe(uint32_t c)
{
    return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x061c || c == 0x200e ||
           c == 0x200f || c == 0x2028 || c == 0x2029 || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2066 && c <= 0x2069);
}

const char *tools_name_problem(const uint8_t *name, size_t len)
{
    if (name == NULL || len == 0) return "an empty name";
    if (len > TOOLS_NAME_MAX) return "a name over 255 bytes";
    if (name[0] == '.') return "a name that starts with '.'";
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_seq(name + i, len - i, &cp);
        if (n == 0) return "a name that is not UTF-8";
        if (cp_unsafe(cp)) return "a control character in the name";
        if (cp == '/' || cp == '\\') return "a path separator in the name";
        if (cp == '.' && i + 1 < len && name[i + 1] == '.') return "\"..\" in the name";
        i += n;
    }
    return NULL;
}

char *tools_text_escape(char *dst, size_t cap, const uint8_t *src, size_t len)
{
    if (cap == 0) return dst;
    size_t o = 0;
    const size_t room = cap > 4 ? cap - 4 : 0; /* "..." and the NUL */
    for (size_t i = 0; i < len;) {
        char tmp[16];
        size_t tl, n;
        uint32_t cp;
        n = utf8_seq(src + i, len - i, &cp);
        if (n == 0) {
            tl = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", src[i]);
            n = 1;
        } else if (cp == '\n' || cp == '\r' || cp == '\t') {
            tmp[0] = '\\', tmp[1] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't', tl = 2;
        } else if (cp < 0x20 || cp == 0x7f) {
            tl = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", (unsigned)cp);
        } else if (cp_unsafe(cp)) {
            tl = (size_t)snprintf(tmp, sizeof(tmp), "\\u{%04x}", (unsigned)cp);
        } else {
            memcpy(tmp, src + i, n);
            tl = n;
        }
        if (o + tl > room) {
            size_t k = 0;
            for (; k < 3 && o + 1 < cap; k++) dst[o++] = '.';
            break;
        }
        memcpy(dst + o, tmp, tl);
        o += tl;
        i += n;
    }
    dst[o] = '\0';
    return dst;
}

int xfer_parse_header(const uint8_t *p, size_t len, uint64_t *size, const uint8_t **name,
                      size_t *name_len, const char **why)
{
    if (len < 12 || p[0] != 'H' || p[1] != 2) {
        *why = "unknown transfer header version";
        return -1;
    }
    uint64_t s = 0;
    for (int i = 0; i < 8; i++) s = s << 8 | p[2 + i];
    size_t nl = (size_t)p[10] << 8 | p[11];
    if (nl > TOOLS_NAME_MAX || 12 + nl != len) {
        *why = "malformed transfer header";
        return -1;
    }
    *size = s;
    *name = p + 12;
    *name_len = nl;
    return 0;
}

int xfer_parse_verdict(const uint8_t *p, size_t len, int *status, const uint8_t **text,
                       size_t *text_len)
{
    if (len < 2 || p[0] != 'V') return -1;
    *status = p[1];
    *text = p + 2;
    *text_len = len - 2;
    return 0;
}

size_t chat_lines_feed(char *buf, size_t cap, size_t *line_len, const char *data, size_t len,
                       int *complete)
{
    *complete = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            if (*line_len < cap) buf[(*line_len)++] = data[i];
            continue;
        }
        if (*line_len > 0 && buf[*line_len - 1] == '\r') (*line_len)--;
        *complete = 1;
        return i + 1;
    }
    return len;
}
