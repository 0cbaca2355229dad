/*
 * The stateless STUN responder (RFC 8489 6.3, RFC 5780 6, RFC 3489 compatibility).
 *
 * tern_stun_server_respond turns one received message into at most one response without
 * allocating: decode and validate first (malformed input is dropped and counted, never answered),
 * then decide between success, 420 (unknown comprehension-required attributes, or CHANGE-REQUEST
 * without an alternate address), 400/401 (short-term credentials), then build the response within
 * the size RFC 8489 allows (576-byte IPv4 / 1280-byte IPv6 datagrams; PADDING never makes a
 * response longer than its request). Error responses pass a per-source token bucket (base's
 * per-source limiter, base/rate.h, in a table of TERN_STUN_RL_SLOTS sources inside the responder,
 * so nothing is allocated), so a flood of bad requests from one address cannot be reflected at
 * full rate.
 */
#include <sodium.h>
#include <string.h>

#include "base/rate.h"
#include "stun/stun_int.h"

void tern_stun_server_config_default(tern_stun_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->software = "tern";
    cfg->fingerprint = 1;
    cfg->allow_rfc3489 = 1;
    cfg->error_rate = 20;
    cfg->error_burst = 40;
}

/* The error-response limiter lives at the start of rl_, its table after it. */
static tern__srclim *limiter(tern_stun_server *s)
{
    _Static_assert(sizeof(tern__srclim) % 8 == 0 && _Alignof(tern__srclim) <= 8,
                   "the limiter and its table share rl_");
    return (tern__srclim *)(void *)s->rl_;
}

int tern_stun_server_init(tern_stun_server *s, const tern_stun_server_config *cfg)
{
    if (s == NULL || cfg == NULL) return TERN_ERR_INVALID_ARG;
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    s->software_len = cfg->software ? strlen(cfg->software) : 0;
    s->username_len = cfg->username ? strlen(cfg->username) : 0;
    s->password_len = cfg->password ? strlen(cfg->password) : 0;
    if (s->software_len > 763 || s->username_len > 512 || s->password_len > 1024)
        return TERN_ERR_INVALID_ARG;
    if (cfg->username && !cfg->password) return TERN_ERR_INVALID_ARG;
    if (cfg->has_alternate &&
        (cfg->primary.family != cfg->alternate.family || cfg->primary.family == TERN_AF_NONE ||
         cfg->primary.port == cfg->alternate.port))
        return TERN_ERR_INVALID_ARG;
    if (s->cfg.error_burst == 0) s->cfg.error_burst = 1;
    if (sodium_init() < 0) return TERN_ERR_CRYPTO;
    uint8_t k[16];
    randombytes_buf(k, sizeof(k));
    int rc = tern__srclim_init_in(limiter(s), (uint8_t *)s->rl_ + sizeof(tern__srclim),
                                  sizeof(s->rl_) - sizeof(tern__srclim), s->cfg.error_rate,
                                  s->cfg.error_burst, TERN_STUN_RL_SLOTS, k);
    sodium_memzero(k, sizeof(k));
    return rc;
}

static size_t ip_len(const tern_addr *a)
{
    return a->family == TERN_AF_INET ? 4 : a->family == TERN_AF_INET6 ? 16 : 0;
}

static int drop(tern_stun_server *s, int reason, int err)
{
    s->counters.drop[reason]++;
    return err;
}

/* The address across from a: the other IP and/or the other port of the 2x2 RFC 5780 set. */
static void changed_addr(const tern_stun_server_config *c, const tern_addr *a, uint32_t flags,
                         tern_addr *out)
{
    *out = *a;
    size_t n = ip_len(a);
    if (flags & TERN_STUN_CHANGE_IP)
        memcpy(out->ip, memcmp(a->ip, c->primary.ip, n) == 0 ? c->alternate.ip : c->primary.ip, n);
    if (flags & TERN_STUN_CHANGE_PORT)
        out->port = a->port == c->primary.port ? c->alternate.port : c->primary.port;
}

static int is_unspecified(const tern_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->ip, zero, ip_len(a)) == 0;
}

int tern_stun_server_respond(tern_stun_server *s, uint64_t now, const tern_addr *local,
                             const tern_addr *remote, int is_tcp, const uint8_t *in, size_t in_len,
                             uint8_t *out, size_t out_cap, tern_stun_reply *reply)
{
    tern_stun_msg m;
    s->counters.rx++;
    int rc = tern_stun_decode(&m, in, in_len, s->cfg.allow_rfc3489);
    if (rc != TERN_OK) return drop(s, m.drop, rc);
    if (m.cls != TERN_STUN_CLASS_REQUEST || m.method != TERN_STUN_METHOD_BINDING)
        return drop(s, TERN_STUN_DROP_NOT_REQUEST, TERN_ERR_IGNORED);
    if (ip_len(remote) == 0 || ip_len(local) == 0) return TERN_ERR_INVALID_ARG;

    uint16_t err = 0;
    uint16_t unknown[TERN_STUN_MAX_UNKNOWN];
    size_t n_unknown = m.n_unknown;
    int auth = 0; /* 1: answer with MESSAGE-INTEGRITY, 2: with MESSAGE-INTEGRITY-SHA256 */
    memcpy(unknown, m.unknown, sizeof(unknown));
    uint32_t flags = is_tcp ? 0 : m.change_flags;
    if (n_unknown > 0) {
        err = 420;
    } else if (flags != 0 && !s->cfg.has_alternate) {
        /* RFC 5780 6.1: without an alternate address CHANGE-REQUEST is not understood */
        err = 420;
        unknown[n_unknown++] = TERN_STUN_ATTR_CHANGE_REQUEST;
    } else if (s->cfg.username != NULL) {
        if (!(m.present & TERN_STUN_HAS_USERNAME) ||
            !(m.present & (TERN_STUN_HAS_INTEGRITY | TERN_STUN_HAS_INTEGRITY_SHA256))) {
            err = 400;
        } else if (m.username_len != s->username_len ||
                   memcmp(m.username, s->cfg.username, s->username_len) != 0 ||
                   tern_stun_check_integrity(&m, (const uint8_t *)s->cfg.password,
                                             s->password_len) != TERN_OK) {
            err = 401;
        } else {
            auth = (m.present & TERN_STUN_HAS_INTEGRITY_SHA256) ? 2 : 1;
        }
    }
    if (err != 0 && !tern__srclim_take(limiter(s), remote, now))
        return drop(s, TERN_STUN_DROP_RATE_LIMITED, TERN_ERR_RATE_LIMITED);

    size_t limit = remote->family == TERN_AF_INET ? TERN_STUN_MAX_RESP_V4 : TERN_STUN_MAX_RESP_V6;
    if (limit > out_cap) limit = out_cap;
    reply->from = *local;
    reply->to = *remote;
    tern_stun_builder b;
    tern_stun_build_init(&b, out, limit, TERN_STUN_METHOD_BINDING,
                         err ? TERN_STUN_CLASS_ERROR : TERN_STUN_CLASS_SUCCESS, m.tid,
                         m.has_cookie, in + 4);
    if (err != 0) {
        tern_stun_add_error(&b, err, NULL);
        if (err == 420) tern_stun_add_unknown(&b, unknown, n_unknown);
    } else {
        tern_addr other;
        if (flags != 0) {
            changed_addr(&s->cfg, local, flags, &reply->from);
            s->counters.change_requests++;
        }
        if ((m.present & TERN_STUN_HAS_RESPONSE_PORT) && !is_tcp) {
            reply->to.port = m.response_port;
        }
        if (s->cfg.has_alternate)
            changed_addr(&s->cfg, &reply->from, TERN_STUN_CHANGE_IP | TERN_STUN_CHANGE_PORT,
                         &other);
        if (m.has_cookie) {
            tern_stun_add_addr(&b, TERN_STUN_ATTR_XOR_MAPPED_ADDRESS, remote);
            if (!is_unspecified(&reply->from))
                tern_stun_add_addr(&b, TERN_STUN_ATTR_RESPONSE_ORIGIN, &reply->from);
            if (s->cfg.has_alternate) tern_stun_add_addr(&b, TERN_STUN_ATTR_OTHER_ADDRESS, &other);
        } else {
            /* RFC 3489 11.2: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS */
            tern_stun_add_addr(&b, TERN_STUN_ATTR_MAPPED_ADDRESS, remote);
            if (!is_unspecified(&reply->from))
                tern_stun_add_addr(&b, TERN_STUN_ATTR_SOURCE_ADDRESS, &reply->from);
            if (s->cfg.has_alternate)
                tern_stun_add_addr(&b, TERN_STUN_ATTR_CHANGED_ADDRESS, &other);
        }
    }
    if (s->software_len > 0)
        tern_stun_add_attr(&b, TERN_STUN_ATTR_SOFTWARE, s->cfg.software, s->software_len);
    if (err == 0 && (m.present & TERN_STUN_HAS_PADDING)) {
        /* RFC 5780 7.6: pad like the request, but never past the request's own size */
        size_t tail = (auth == 1 ? 24 : auth == 2 ? 36 : 0) +
                      (s->cfg.fingerprint && m.has_cookie ? 8 : 0);
        size_t budget = in_len > limit ? limit : in_len;
        size_t used = b.len + 4 + tail;
        size_t pad = m.padding_len & ~(size_t)3;
        if (used >= budget) pad = 0;
        else if (pad > budget - used) pad = (budget - used) & ~(size_t)3;
        if (pad > 0) tern_stun_add_attr(&b, TERN_STUN_ATTR_PADDING, NULL, pad);
    }
    if (auth == 1) tern_stun_add_integrity(&b, (const uint8_t *)s->cfg.password, s->password_len);
    if (auth == 2)
        tern_stun_add_integrity_sha256(&b, (const uint8_t *)s->cfg.password, s->password_len);
    if (s->cfg.fingerprint && m.has_cookie) tern_stun_add_fingerprint(&b);
    rc = tern_stun_build_finish(&b);
    if (rc < 0) return drop(s, TERN_STUN_DROP_OUTPUT, rc);
    reply->len = (size_t)rc;
    if (err) s->counters.tx_error++;
    else s->counters.tx_success++;
    if (!m.has_cookie) s->counters.tx_rfc3489++;
    return rc;
}
