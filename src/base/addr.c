/* tern_addr: socket-independent IP addresses, with parsing and formatting. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern/base.h"

void tern_addr_ipv4(tern_addr *a, uint8_t a0, uint8_t a1, uint8_t a2, uint8_t a3, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->family = TERN_AF_INET;
    a->ip[0] = a0;
    a->ip[1] = a1;
    a->ip[2] = a2;
    a->ip[3] = a3;
    a->port = port;
}

int tern_addr_equal(const tern_addr *a, const tern_addr *b)
{
    if (a->family != b->family || a->port != b->port || a->transport != b->transport) return 0;
    size_t n = a->family == TERN_AF_INET ? 4 : a->family == TERN_AF_INET6 ? 16 : 0;
    return memcmp(a->ip, b->ip, n) == 0;
}

static int parse_port(const char *s, uint16_t *port)
{
    char *end = NULL;
    if (*s == '\0') return TERN_ERR_MALFORMED;
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v > 65535) return TERN_ERR_MALFORMED;
    *port = (uint16_t)v;
    return TERN_OK;
}

static int tern_addr_parse_ip(tern_addr *a, const char *text);

static const char *const TRANSPORT_NAMES[] = {"udp", "tcp", "tls"};

int tern_addr_parse(tern_addr *a, const char *text)
{
    char whole[80];
    memset(a, 0, sizeof(*a));
    if (text == NULL) return TERN_ERR_INVALID_ARG;
    /* an optional "/udp", "/tcp" or "/tls" after the address */
    const char *slash = strrchr(text, '/');
    uint8_t transport = TERN_TRANSPORT_UDP;
    if (slash != NULL) {
        size_t t;
        for (t = 0; t < sizeof(TRANSPORT_NAMES) / sizeof(TRANSPORT_NAMES[0]); t++)
            if (strcmp(slash + 1, TRANSPORT_NAMES[t]) == 0) break;
        if (t == sizeof(TRANSPORT_NAMES) / sizeof(TRANSPORT_NAMES[0])) return TERN_ERR_MALFORMED;
        if ((size_t)(slash - text) >= sizeof(whole)) return TERN_ERR_MALFORMED;
        memcpy(whole, text, (size_t)(slash - text));
        whole[slash - text] = '\0';
        text = whole;
        transport = (uint8_t)t;
    }
    int rc = tern_addr_parse_ip(a, text);
    if (rc == TERN_OK) a->transport = transport;
    return rc;
}

static int tern_addr_parse_ip(tern_addr *a, const char *text)
{
    char host[64];
    const char *port = NULL;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || (size_t)(close - text - 1) >= sizeof(host)) return TERN_ERR_MALFORMED;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        if (close[1] == ':') port = close + 2;
        else if (close[1] != '\0') return TERN_ERR_MALFORMED;
        if (inet_pton(AF_INET6, host, a->ip) != 1) return TERN_ERR_MALFORMED;
        a->family = TERN_AF_INET6;
    } else {
        const char *colon = strrchr(text, ':');
        size_t hl = colon ? (size_t)(colon - text) : strlen(text);
        if (hl >= sizeof(host)) return TERN_ERR_MALFORMED;
        memcpy(host, text, hl);
        host[hl] = '\0';
        if (colon) port = colon + 1;
        if (inet_pton(AF_INET, host, a->ip) == 1) {
            a->family = TERN_AF_INET;
        } else if (colon == NULL || strchr(host, ':') != NULL) {
            /* bare IPv6 without brackets and without port */
            if (inet_pton(AF_INET6, text, a->ip) != 1) return TERN_ERR_MALFORMED;
            a->family = TERN_AF_INET6;
            port = NULL;
        } else {
            return TERN_ERR_MALFORMED;
        }
    }
    if (port != NULL && parse_port(port, &a->port) != TERN_OK) return TERN_ERR_MALFORMED;
    return TERN_OK;
}

const char *tern_addr_format(const tern_addr *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    const char *suffix = a->transport == TERN_TRANSPORT_TCP   ? "/tcp"
                         : a->transport == TERN_TRANSPORT_TLS ? "/tls"
                                                              : "";
    int n;
    if (a->family == TERN_AF_INET) {
        inet_ntop(AF_INET, a->ip, ip, sizeof(ip));
        n = snprintf(buf, len, "%s:%u%s", ip, a->port, suffix);
    } else if (a->family == TERN_AF_INET6) {
        inet_ntop(AF_INET6, a->ip, ip, sizeof(ip));
        n = snprintf(buf, len, "[%s]:%u%s", ip, a->port, suffix);
    } else {
        n = snprintf(buf, len, "none");
    }
    if (n < 0 || (size_t)n >= len) {
        if (len >= 2) { buf[0] = '?'; buf[1] = '\0'; }
    }
    return buf;
}
