/*
 * Rendezvous codec: the byte layout of docs/rendezvous.md, and tokens.
 *
 * A message is version (1), kind, then TLVs: type (u8), length (u16 big-endian), value. The
 * encoder writes the TLVs in ascending type order; the decoder accepts any order, walks the
 * input with one bounded cursor (every read checks the bytes left first), rejects a repeated
 * field, a length that does not fit its type, and a message that lacks a field its kind requires
 * (one bit mask per kind, shared by encoder and decoder, so the two cannot disagree). Types at or
 * above 0x80 are extensions: skipped when unknown. Tokens are HMAC-SHA256 (libsodium) over a
 * domain string, the kind, the subject and the expiry; the MAC is checked before the expiry so a
 * forged token is always reported as forged.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "tern/rendezvous.h"

enum {
    T_PEER_ID = 0x01,
    T_PUBKEY = 0x02,
    T_CAND = 0x03,
    T_NONCE = 0x04,
    T_TOKEN = 0x05,
    T_GROUP = 0x06,
    T_SERVICE = 0x07,
    T_METHOD = 0x08,
    T_CALL_ID = 0x09,
    T_TIMEOUT = 0x0a,
    T_PAYLOAD = 0x0b,
    T_STATUS = 0x0c,
    T_ERROR = 0x0d,
    T_EVENT = 0x0e,
    T_COUNT = 0x0f,
    T_MEMBERS = 0x10,
    T_CHANNEL = 0x11,
    T_MAX_ = 0x11,
};

#define B(t) (1u << (t))

/* Fields each kind requires (indexed by kind). */
static const uint32_t required[TERN_RDV_KIND_MAX_ + 1] = {
    [TERN_RDV_REGISTER] = 0,
    [TERN_RDV_REGISTERED] = B(T_CAND),
    [TERN_RDV_INTRODUCE] = B(T_PEER_ID),
    [TERN_RDV_PEER_INFO] = B(T_PEER_ID) | B(T_PUBKEY) | B(T_NONCE),
    [TERN_RDV_INTRODUCED] = B(T_PEER_ID) | B(T_PUBKEY) | B(T_NONCE),
    [TERN_RDV_JOIN] = B(T_GROUP),
    [TERN_RDV_JOINED] = B(T_GROUP) | B(T_COUNT),
    [TERN_RDV_LEAVE] = B(T_GROUP),
    [TERN_RDV_PRESENCE] = B(T_GROUP) | B(T_PEER_ID) | B(T_EVENT),
    [TERN_RDV_GROUP_MSG] = B(T_GROUP) | B(T_PAYLOAD),
    [TERN_RDV_OFFER] = B(T_SERVICE),
    [TERN_RDV_OFFERED] = B(T_SERVICE),
    [TERN_RDV_CALL] = B(T_SERVICE) | B(T_METHOD) | B(T_CALL_ID) | B(T_PAYLOAD),
    [TERN_RDV_REPLY] = B(T_CALL_ID) | B(T_STATUS) | B(T_PAYLOAD),
    [TERN_RDV_ERROR] = B(T_ERROR),
};

void tern_rdv_msg_init(tern_rdv_msg *m, uint8_t kind)
{
    memset(m, 0, sizeof(*m));
    m->kind = kind;
}

void tern_rdv_msg_error(tern_rdv_msg *m, uint8_t req_kind, uint16_t code)
{
    tern_rdv_msg_init(m, TERN_RDV_ERROR);
    m->has_error = 1;
    m->error = code;
    m->req_kind = req_kind;
}

/* ---------------------------------------------------------------- encoder */

typedef struct wbuf {
    uint8_t *p, *end;
    int err;
} wbuf;

static void put(wbuf *w, const void *src, size_t n)
{
    if (w->err) return;
    if ((size_t)(w->end - w->p) < n) {
        w->err = TERN_ERR_BUFFER;
        return;
    }
    if (n) memcpy(w->p, src, n);
    w->p += n;
}

static void put_u8(wbuf *w, uint8_t v)
{
    put(w, &v, 1);
}

static void put_be(wbuf *w, uint64_t v, size_t n)
{
    uint8_t b[8];
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    put(w, b, n);
}

static void put_tlv(wbuf *w, uint8_t type, const void *v, size_t len)
{
    put_u8(w, type);
    put_be(w, len, 2);
    put(w, v, len);
}

static void put_tlv_be(wbuf *w, uint8_t type, uint64_t v, size_t n)
{
    put_u8(w, type);
    put_be(w, n, 2);
    put_be(w, v, n);
}

static int name_ok(const uint8_t *p, size_t len)
{
    return p != NULL && len >= 1 && len <= TERN_RDV_MAX_NAME;
}

int tern_rdv_encode(const tern_rdv_msg *m, uint8_t *buf, size_t cap)
{
    if (m == NULL || buf == NULL || m->kind == 0 || m->kind > TERN_RDV_KIND_MAX_)
        return TERN_ERR_INVALID_ARG;
    uint32_t have = 0;
    if (m->has_peer_id) have |= B(T_PEER_ID);
    if (m->has_pubkey) have |= B(T_PUBKEY);
    if (m->n_cands) have |= B(T_CAND);
    if (m->has_nonce) have |= B(T_NONCE);
    if (m->has_token) have |= B(T_TOKEN);
    if (m->group) have |= B(T_GROUP);
    if (m->service) have |= B(T_SERVICE);
    if (m->method) have |= B(T_METHOD);
    if (m->has_call_id) have |= B(T_CALL_ID);
    if (m->has_timeout) have |= B(T_TIMEOUT);
    if (m->has_payload) have |= B(T_PAYLOAD);
    if (m->has_status) have |= B(T_STATUS);
    if (m->has_error) have |= B(T_ERROR);
    if (m->has_event) have |= B(T_EVENT);
    if (m->has_count) have |= B(T_COUNT);
    if (m->members) have |= B(T_MEMBERS);
    if (m->has_channel) have |= B(T_CHANNEL);
    if ((have & required[m->kind]) != required[m->kind]) return TERN_ERR_INVALID_ARG;
    if (m->n_cands > TERN_RDV_MAX_CANDS || m->n_members > TERN_RDV_MAX_MEMBERS ||
        m->payload_len > TERN_RDV_MAX_PAYLOAD || (m->has_payload && m->payload == NULL &&
                                                  m->payload_len))
        return TERN_ERR_INVALID_ARG;
    if ((m->group && !name_ok(m->group, m->group_len)) ||
        (m->service && !name_ok(m->service, m->service_len)) ||
        (m->method && !name_ok(m->method, m->method_len)))
        return TERN_ERR_INVALID_ARG;

    wbuf w = {buf, buf + cap, 0};
    put_u8(&w, TERN_RDV_VERSION);
    put_u8(&w, m->kind);
    if (m->has_peer_id) put_tlv(&w, T_PEER_ID, m->peer_id, TERN_PEER_ID_LEN);
    if (m->has_pubkey) put_tlv(&w, T_PUBKEY, m->pubkey, TERN_KEY_LEN);
    for (size_t i = 0; i < m->n_cands; i++) {
        const tern_rdv_cand *c = &m->cands[i];
        size_t iplen = c->addr.family == TERN_AF_INET ? 4 : 16;
        if (c->addr.family != TERN_AF_INET && c->addr.family != TERN_AF_INET6)
            return TERN_ERR_INVALID_ARG;
        if (c->kind < TERN_RDV_CAND_LOCAL || c->kind > TERN_RDV_CAND_RELAY)
            return TERN_ERR_INVALID_ARG;
        put_u8(&w, T_CAND);
        put_be(&w, 4 + iplen, 2);
        put_u8(&w, c->kind);
        put_u8(&w, c->addr.family);
        put_be(&w, c->addr.port, 2);
        put(&w, c->addr.ip, iplen);
    }
    if (m->has_nonce) put_tlv(&w, T_NONCE, m->nonce, TERN_RDV_NONCE_LEN);
    if (m->has_token) put_tlv(&w, T_TOKEN, m->token, TERN_RDV_TOKEN_LEN);
    if (m->group) put_tlv(&w, T_GROUP, m->group, m->group_len);
    if (m->service) put_tlv(&w, T_SERVICE, m->service, m->service_len);
    if (m->method) put_tlv(&w, T_METHOD, m->method, m->method_len);
    if (m->has_call_id) put_tlv_be(&w, T_CALL_ID, m->call_id, 8);
    if (m->has_timeout) put_tlv_be(&w, T_TIMEOUT, m->timeout_ms, 4);
    if (m->has_payload) put_tlv(&w, T_PAYLOAD, m->payload, m->payload_len);
    if (m->has_status) put_tlv_be(&w, T_STATUS, m->status, 4);
    if (m->has_error) {
        put_u8(&w, T_ERROR);
        put_be(&w, 3, 2);
        put_be(&w, m->error, 2);
        put_u8(&w, m->req_kind);
    }
    if (m->has_event) put_tlv_be(&w, T_EVENT, m->event, 1);
    if (m->has_count) put_tlv_be(&w, T_COUNT, m->count, 4);
    if (m->members) put_tlv(&w, T_MEMBERS, m->members, m->n_members * TERN_PEER_ID_LEN);
    if (m->has_channel) put_tlv(&w, T_CHANNEL, m->channel, TERN_RELAY_CHANNEL_LEN);
    if (w.err) return w.err;
    return (int)(w.p - buf);
}

/* ---------------------------------------------------------------- decoder */

static uint64_t get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Decodes one TLV value of type t into m. */
static int field(tern_rdv_msg *m, uint8_t t, const uint8_t *v, size_t len)
{
    switch (t) {
    case T_PEER_ID:
        if (len != TERN_PEER_ID_LEN) return TERN_ERR_MALFORMED;
        memcpy(m->peer_id, v, len);
        m->has_peer_id = 1;
        return TERN_OK;
    case T_PUBKEY:
        if (len != TERN_KEY_LEN) return TERN_ERR_MALFORMED;
        memcpy(m->pubkey, v, len);
        m->has_pubkey = 1;
        return TERN_OK;
    case T_CAND: {
        if (m->n_cands == TERN_RDV_MAX_CANDS || len < 4) return TERN_ERR_MALFORMED;
        tern_rdv_cand *c = &m->cands[m->n_cands];
        memset(c, 0, sizeof(*c));
        c->kind = v[0];
        c->addr.family = v[1];
        c->addr.port = (uint16_t)get_be(v + 2, 2);
        size_t iplen = c->addr.family == TERN_AF_INET ? 4 : c->addr.family == TERN_AF_INET6 ? 16 : 0;
        if (iplen == 0 || len != 4 + iplen || c->kind < TERN_RDV_CAND_LOCAL ||
            c->kind > TERN_RDV_CAND_RELAY)
            return TERN_ERR_MALFORMED;
        memcpy(c->addr.ip, v + 4, iplen);
        m->n_cands++;
        return TERN_OK;
    }
    case T_NONCE:
        if (len != TERN_RDV_NONCE_LEN) return TERN_ERR_MALFORMED;
        memcpy(m->nonce, v, len);
        m->has_nonce = 1;
        return TERN_OK;
    case T_TOKEN:
        if (len != TERN_RDV_TOKEN_LEN) return TERN_ERR_MALFORMED;
        memcpy(m->token, v, len);
        m->has_token = 1;
        return TERN_OK;
    case T_GROUP:
    case T_SERVICE:
    case T_METHOD:
        if (len < 1 || len > TERN_RDV_MAX_NAME) return TERN_ERR_MALFORMED;
        if (t == T_GROUP) m->group = v, m->group_len = len;
        else if (t == T_SERVICE) m->service = v, m->service_len = len;
        else m->method = v, m->method_len = len;
        return TERN_OK;
    case T_CALL_ID:
        if (len != 8) return TERN_ERR_MALFORMED;
        m->call_id = get_be(v, 8);
        m->has_call_id = 1;
        return TERN_OK;
    case T_TIMEOUT:
    case T_STATUS:
    case T_COUNT:
        if (len != 4) return TERN_ERR_MALFORMED;
        if (t == T_TIMEOUT) m->timeout_ms = (uint32_t)get_be(v, 4), m->has_timeout = 1;
        else if (t == T_STATUS) m->status = (uint32_t)get_be(v, 4), m->has_status = 1;
        else m->count = (uint32_t)get_be(v, 4), m->has_count = 1;
        return TERN_OK;
    case T_PAYLOAD:
        m->payload = v; /* any length the u16 can carry */
        m->payload_len = len;
        m->has_payload = 1;
        return TERN_OK;
    case T_ERROR:
        if (len != 3) return TERN_ERR_MALFORMED;
        m->error = (uint16_t)get_be(v, 2);
        m->req_kind = v[2];
        m->has_error = 1;
        return TERN_OK;
    case T_EVENT:
        if (len != 1 || (v[0] != TERN_RDV_PRESENCE_JOIN && v[0] != TERN_RDV_PRESENCE_LEAVE))
            return TERN_ERR_MALFORMED;
        m->event = v[0];
        m->has_event = 1;
        return TERN_OK;
    case T_MEMBERS:
        if (len % TERN_PEER_ID_LEN || len / TERN_PEER_ID_LEN > TERN_RDV_MAX_MEMBERS)
            return TERN_ERR_MALFORMED;
        m->members = v;
        m->n_members = len / TERN_PEER_ID_LEN;
        return TERN_OK;
    case T_CHANNEL:
        if (len != TERN_RELAY_CHANNEL_LEN) return TERN_ERR_MALFORMED;
        memcpy(m->channel, v, len);
        m->has_channel = 1;
        return TERN_OK;
    default:
        return t >= 0x80 ? TERN_OK : TERN_ERR_MALFORMED;
    }
}

int tern_rdv_decode(const uint8_t *data, size_t len, tern_rdv_msg *m)
{
    if (m == NULL || (data == NULL && len)) return TERN_ERR_INVALID_ARG;
    tern_rdv_msg_init(m, 0);
    if (len < 2) return TERN_ERR_TRUNCATED;
    if (data[0] != TERN_RDV_VERSION) return TERN_ERR_VERSION;
    if (data[1] == 0 || data[1] > TERN_RDV_KIND_MAX_) return TERN_ERR_MALFORMED;
    m->kind = data[1];
    const uint8_t *p = data + 2, *end = data + len;
    uint32_t seen = 0;
    while (p < end) {
        if (end - p < 3) return TERN_ERR_TRUNCATED;
        uint8_t t = p[0];
        size_t l = (size_t)get_be(p + 1, 2);
        p += 3;
        if ((size_t)(end - p) < l) return TERN_ERR_TRUNCATED;
        if (t <= T_MAX_) {
            if (t != T_CAND && (seen & B(t))) return TERN_ERR_MALFORMED;
            seen |= B(t);
        }
        int rc = field(m, t, p, l);
        if (rc != TERN_OK) return rc;
        p += l;
    }
    if ((seen & required[m->kind]) != required[m->kind]) return TERN_ERR_MALFORMED;
    return TERN_OK;
}

int tern_rdv_send(tern_conn *c, uint64_t flow, uint64_t now, const tern_rdv_msg *m)
{
    uint8_t small[2048];
    uint8_t *buf = small;
    size_t cap = sizeof(small);
    if (m != NULL && m->payload_len + 1024 > cap) {
        cap = TERN_RDV_MAX_MSG;
        buf = malloc(cap);
        if (buf == NULL) return TERN_ERR_NOMEM;
    }
    int n = tern_rdv_encode(m, buf, cap);
    int rc = n < 0 ? n : tern_flow_send(c, flow, now, buf, (size_t)n, -1);
    if (buf != small) free(buf);
    return rc;
}

/* ---------------------------------------------------------------- tokens */

static const char token_domain[] = "tern-rdv-token-1";

static int token_mac(const uint8_t secret[TERN_RDV_SECRET_LEN], uint8_t kind,
                     const uint8_t *subject, size_t subject_len, uint64_t expiry,
                     uint8_t mac[TERN_RDV_MAC_LEN])
{
    if (secret == NULL || subject == NULL || subject_len < 1 || subject_len > 255 ||
        kind < TERN_RDV_TOKEN_REGISTER || kind > TERN_RDV_TOKEN_OFFER)
        return TERN_ERR_INVALID_ARG;
    if (sodium_init() < 0) return TERN_ERR_CRYPTO;
    uint8_t head[2] = {kind, (uint8_t)subject_len}, exp[8];
    for (int i = 0; i < 8; i++) exp[i] = (uint8_t)(expiry >> (56 - 8 * i));
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, secret, TERN_RDV_SECRET_LEN);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)token_domain, sizeof(token_domain) - 1);
    crypto_auth_hmacsha256_update(&st, head, sizeof(head));
    crypto_auth_hmacsha256_update(&st, subject, subject_len);
    crypto_auth_hmacsha256_update(&st, exp, sizeof(exp));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));
    return TERN_OK;
}

int tern_rdv_token_make(const uint8_t secret[TERN_RDV_SECRET_LEN], uint8_t kind,
                        const uint8_t *subject, size_t subject_len, uint64_t expiry_unix,
                        uint8_t token[TERN_RDV_TOKEN_LEN])
{
    if (token == NULL) return TERN_ERR_INVALID_ARG;
    int rc = token_mac(secret, kind, subject, subject_len, expiry_unix, token + 8);
    if (rc != TERN_OK) return rc;
    for (int i = 0; i < 8; i++) token[i] = (uint8_t)(expiry_unix >> (56 - 8 * i));
    return TERN_OK;
}

int tern_rdv_token_check(const uint8_t secret[TERN_RDV_SECRET_LEN], uint8_t kind,
                         const uint8_t *subject, size_t subject_len, uint64_t now_unix,
                         const uint8_t token[TERN_RDV_TOKEN_LEN])
{
    uint8_t mac[TERN_RDV_MAC_LEN];
    uint64_t expiry = get_be(token, 8);
    if (token_mac(secret, kind, subject, subject_len, expiry, mac) != TERN_OK)
        return TERN_RDV_E_TOKEN_FORGED;
    int bad = sodium_memcmp(mac, token + 8, TERN_RDV_MAC_LEN);
    sodium_memzero(mac, sizeof(mac));
    if (bad != 0) return TERN_RDV_E_TOKEN_FORGED;
    if (expiry < now_unix) return TERN_RDV_E_TOKEN_EXPIRED;
    return 0;
}

const char *tern_rdv_error_name(int code)
{
    switch (code) {
    case TERN_RDV_E_UNKNOWN_PEER: return "unknown peer";
    case TERN_RDV_E_NOT_REGISTERED: return "not registered";
    case TERN_RDV_E_NO_SERVICE: return "no such service";
    case TERN_RDV_E_TIMEOUT: return "call timed out";
    case TERN_RDV_E_PROVIDER_GONE: return "service provider gone";
    case TERN_RDV_E_TOKEN_REQUIRED: return "token required";
    case TERN_RDV_E_TOKEN_FORGED: return "token forged";
    case TERN_RDV_E_TOKEN_EXPIRED: return "token expired";
    case TERN_RDV_E_RATE_LIMITED: return "rate limited";
    case TERN_RDV_E_NOT_MEMBER: return "not a member";
    case TERN_RDV_E_SERVICE_TAKEN: return "service taken";
    case TERN_RDV_E_LIMIT: return "server limit";
    case TERN_RDV_E_MALFORMED: return "malformed request";
    case TERN_RDV_E_INVALID: return "invalid request";
    default: return "unknown";
    }
}

/* ---------------------------------------------------------------- LOCAL candidates */

static int is_loopback(const tern_addr *a)
{
    static const uint8_t one6[16] = {[15] = 1};
    if (a->family == TERN_AF_INET) return a->ip[0] == 127;
    if (a->family != TERN_AF_INET6) return 0;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a->ip, mapped, 12) == 0) return a->ip[12] == 127;
    return memcmp(a->ip, one6, 16) == 0;
}

int tern_rdv_local_cand_ok(const tern_addr *a, const tern_addr *observed)
{
    if (a == NULL || a->port == 0) return 0;
    if (is_loopback(a)) return observed != NULL && is_loopback(observed);
    const uint8_t *ip = a->ip;
    if (a->family == TERN_AF_INET6) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(ip, mapped, 12) != 0) {
            if ((ip[0] & 0xfe) == 0xfc) return 1;                  /* fc00::/7 */
            if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80) return 1; /* fe80::/10 */
            return 0;
        }
        ip += 12; /* ::ffff:a.b.c.d: judged as IPv4 */
    } else if (a->family != TERN_AF_INET) {
        return 0;
    }
    if (ip[0] == 10) return 1;                                  /* 10/8 */
    if (ip[0] == 172 && (ip[1] & 0xf0) == 16) return 1;         /* 172.16/12 */
    if (ip[0] == 192 && ip[1] == 168) return 1;                 /* 192.168/16 */
    if (ip[0] == 100 && (ip[1] & 0xc0) == 64) return 1;         /* 100.64/10 */
    if (ip[0] == 169 && ip[1] == 254) return 1;                 /* 169.254/16 */
    return 0;
}
