/*
 * tern_hostile m4: access control (issue 12, row M4) against ternd --require-tokens all.
 */
#include "hostile.h"

/* ---------------------------------------------------------------- M4: access control */

/* ternd runs with --token-secret and --require-tokens all. Tokens the attackers present, each
 * one a way an attacker gets hold of something token-shaped: */
enum {
    TOK_NONE,     /* no token at all: ERROR(TOKEN_REQUIRED) */
    TOK_RANDOM,   /* 40 random bytes: ERROR(TOKEN_FORGED) */
    TOK_SECRET,   /* the right subject and kind, made with a secret of its own: FORGED */
    TOK_OTHER,    /* a valid token for another subject (another peer ID, group or service,
                     stolen or issued to the attacker for that one): FORGED */
    TOK_EXPIRED,  /* the right subject and kind, the operator's secret, expired an hour ago
                     (issued once, kept): ERROR(TOKEN_EXPIRED) */
    TOK_KIND,     /* the right subject, the operator's secret, another kind (a JOIN token
                     presented to OFFER, ...): FORGED */
    TOK_VALID,    /* valid (the legitimate peers', and one stolen JOIN token) */
    TOK_WAYS
};

static const char *m4_group = "m4-room", *m4_service = "m4-svc";
static uint8_t m4_own_secret[TERN_RDV_SECRET_LEN];

static uint16_t m4_code(int way)
{
    return way == TOK_NONE      ? TERN_RDV_E_TOKEN_REQUIRED
           : way == TOK_EXPIRED ? TERN_RDV_E_TOKEN_EXPIRED
                                : TERN_RDV_E_TOKEN_FORGED;
}

/* A token of kind for subject, made the given way. */
static void m4_token(int way, uint8_t kind, const uint8_t *subj, size_t len, uint8_t *tok)
{
    uint64_t now = (uint64_t)time(NULL);
    const uint8_t *secret = way == TOK_SECRET ? m4_own_secret : opt.secret;
    uint64_t exp = way == TOK_EXPIRED ? now - 3600 : now + 3600;
    uint8_t k = kind;
    if (way == TOK_KIND) k = kind == TERN_RDV_TOKEN_JOIN ? TERN_RDV_TOKEN_OFFER : TERN_RDV_TOKEN_JOIN;
    uint8_t other[TERN_RDV_MAX_NAME];
    if (way == TOK_OTHER) { /* the same subject with its last byte changed: another name/ID */
        memcpy(other, subj, len);
        other[len - 1] ^= 0x01;
        subj = other;
    }
    if (way == TOK_RANDOM) {
        randombytes_buf(tok, TERN_RDV_TOKEN_LEN);
        return;
    }
    if (tern_rdv_token_make(secret, k, subj, len, exp, tok) != TERN_OK) die("token");
}

/* Sends m from attacker pi and records the answer it must draw. */
static void m4_send(int pi, tern_rdv_msg *m, uint16_t code, uint64_t *sent)
{
    hpeer *p = &peers[pi];
    expect_ring *x = p->exp;
    if (x->head - x->tail >= EXP_RING) return;
    if (rdv_send(p, now_ns(), m) != TERN_OK) return;
    x->kind[x->head % EXP_RING] = m->kind;
    x->code[x->head % EXP_RING] = code;
    x->head++;
    (*sent)++;
}

static void m4_named(tern_rdv_msg *m, uint8_t kind, const char *name, int way, uint8_t tk)
{
    tern_rdv_msg_init(m, kind);
    if (kind == TERN_RDV_JOIN || kind == TERN_RDV_GROUP_MSG) {
        m->group = (const uint8_t *)name;
        m->group_len = strlen(name);
    } else {
        m->service = (const uint8_t *)name;
        m->service_len = strlen(name);
    }
    if (way != TOK_NONE) {
        m4_token(way, tk, (const uint8_t *)name, strlen(name), m->token);
        m->has_token = 1;
    }
}

/* One round of an attacker that holds no register token: REGISTER with every kind of bad
 * token, then what only a registered peer may do (JOIN even with a valid stolen JOIN token,
 * OFFER, CALL the service, INTRODUCE): ERROR(NOT_REGISTERED) each. */
static void m4_round_unregistered(int pi, int legit, uint64_t *sent)
{
    if (peers[pi].exp->head - peers[pi].exp->tail > EXP_RING - 16) return;
    tern_rdv_msg m;
    for (int way = TOK_NONE; way < TOK_VALID; way++) {
        tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
        if (way != TOK_NONE) {
            m4_token(way, TERN_RDV_TOKEN_REGISTER, peers[pi].id, TERN_PEER_ID_LEN, m.token);
            m.has_token = 1;
        }
        m4_send(pi, &m, m4_code(way), sent);
    }
    /* a valid register token of the legitimate caller, stolen: bound to the caller's ID */
    tern_rdv_msg_init(&m, TERN_RDV_REGISTER);
    m4_token(TOK_VALID, TERN_RDV_TOKEN_REGISTER, peers[legit].id, TERN_PEER_ID_LEN, m.token);
    m.has_token = 1;
    m4_send(pi, &m, TERN_RDV_E_TOKEN_FORGED, sent);
    m4_named(&m, TERN_RDV_JOIN, m4_group, TOK_VALID, TERN_RDV_TOKEN_JOIN);
    m4_send(pi, &m, TERN_RDV_E_NOT_REGISTERED, sent);
    m4_named(&m, TERN_RDV_OFFER, m4_service, TOK_NONE, 0);
    m4_send(pi, &m, TERN_RDV_E_NOT_REGISTERED, sent);
    m4_named(&m, TERN_RDV_CALL, m4_service, TOK_NONE, 0);
    m.method = (const uint8_t *)"m", m.method_len = 1;
    m.has_call_id = 1, m.call_id = 1;
    m.payload = (const uint8_t *)"x", m.payload_len = 1, m.has_payload = 1;
    m4_send(pi, &m, TERN_RDV_E_NOT_REGISTERED, sent);
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    memcpy(m.peer_id, peers[legit].id, TERN_PEER_ID_LEN);
    m.has_peer_id = 1;
    m4_send(pi, &m, TERN_RDV_E_NOT_REGISTERED, sent);
}

/* One round of an attacker that registered (a register token of its own: a user of the
 * service) but holds no JOIN or OFFER token: JOIN the group and OFFER (squat) the service with
 * every kind of bad token, post to the group; in the first round, before the legitimate
 * provider offers, CALL the service too (ERROR(NO_SERVICE): the squat took nothing). */
static void m4_round_registered(int pi, int first_round, uint64_t *sent)
{
    if (peers[pi].exp->head - peers[pi].exp->tail > EXP_RING - 16) return;
    tern_rdv_msg m;
    for (int way = TOK_NONE; way < TOK_VALID; way++) {
        m4_named(&m, TERN_RDV_JOIN, m4_group, way, TERN_RDV_TOKEN_JOIN);
        m4_send(pi, &m, m4_code(way), sent);
        m4_named(&m, TERN_RDV_OFFER, m4_service, way, TERN_RDV_TOKEN_OFFER);
        m4_send(pi, &m, m4_code(way), sent);
    }
    m4_named(&m, TERN_RDV_GROUP_MSG, m4_group, TOK_NONE, 0);
    m.payload = (const uint8_t *)"x", m.payload_len = 1, m.has_payload = 1;
    m4_send(pi, &m, TERN_RDV_E_NOT_MEMBER, sent);
    if (first_round) {
        m4_named(&m, TERN_RDV_CALL, m4_service, TOK_NONE, 0);
        m.method = (const uint8_t *)"m", m.method_len = 1;
        m.has_call_id = 1, m.call_id = 1;
        m.payload = (const uint8_t *)"x", m.payload_len = 1, m.has_payload = 1;
        m4_send(pi, &m, TERN_RDV_E_NO_SERVICE, sent);
    }
}

static int m4_first, m4_count;
static int m4_all_answered(void)
{
    for (int i = m4_first; i < m4_first + m4_count; i++)
        if (peers[i].exp->head != peers[i].exp->tail && !peers[i].closed) return 0;
    return 1;
}

/* A legitimate request from pi (a valid token where one is needed) and its answer: 1 when the
 * answer is the wanted kind within 3 s (*err: the ERROR code, if one came). */
static int m4_legit(int pi, tern_rdv_msg *m, uint8_t want, int *err)
{
    hpeer *p = &peers[pi];
    uint64_t e0 = p->errors, want0 = 0, *ctr = NULL;
    switch (want) {
    case TERN_RDV_JOINED: ctr = &p->joined; break;
    case TERN_RDV_OFFERED: ctr = &p->offered; break;
    case TERN_RDV_REPLY: ctr = &p->replies; break;
    case TERN_RDV_PEER_INFO: ctr = &p->peer_info; break;
    default: break;
    }
    uint64_t errs0[ERR_CODES];
    memcpy(errs0, p->err, sizeof(errs0));
    if (ctr) want0 = *ctr;
    rdv_send(p, now_ns(), m);
    uint64_t t0 = now_ns();
    while (p->errors == e0 && (ctr == NULL || *ctr == want0) && !p->closed &&
           now_ns() - t0 < 3 * TERN_NS_PER_S)
        loop(10, NULL);
    *err = 0;
    for (int k = 0; k < ERR_CODES; k++)
        if (p->err[k] != errs0[k]) *err = k;
    return ctr != NULL && *ctr > want0;
}

void row_m4(void)
{
    if (!opt.has_secret) die("m4 needs --secret FILE (ternd's --token-secret)");
    randombytes_buf(m4_own_secret, sizeof(m4_own_secret));
    begin();
    int n = opt.n ? opt.n : 16;
    double secs = opt.secs > 0 ? opt.secs : 6;
    /* the legitimate side, each with tokens of the operator: a provider of the service, a
     * caller, two members of the group (a third joins during the attack) */
    int prov = spawn(1, 29, 1, 1, 1);
    int caller = spawn(1, 29, 2, 1, 1);
    int mem = spawn(3, 29, 3, 1, 1);
    int err;
    tern_rdv_msg m;
    int members_joined = 0;
    for (int i = mem; i < mem + 2; i++) {
        m4_named(&m, TERN_RDV_JOIN, m4_group, TOK_VALID, TERN_RDV_TOKEN_JOIN);
        members_joined += m4_legit(i, &m, TERN_RDV_JOINED, &err);
    }
    peers[prov].provider = 1;
    /* the attackers, fresh keys: n that never get a register token, n registered with one of
     * their own (users of the service who hold no JOIN or OFFER token) */
    int ua = spawn(n, 30, 1, 4, 0);
    int ra = spawn(n, 30, 100, 4, 1);
    int ra_registered = 0;
    for (int i = ra; i < ra + n; i++) ra_registered += peers[i].registered;
    if (count_est(ua, n, NULL) != n || ra_registered != n)
        die("m4: %d of %d attackers connected, %d of %d registered with their own token",
            count_est(ua, n, NULL), n, ra_registered, n);
    m4_first = ua;
    m4_count = 2 * n;
    for (int i = ua; i < ua + 2 * n; i++) {
        peers[i].attacker = 1;
        peers[i].exp = calloc(1, sizeof(expect_ring));
        if (peers[i].exp == NULL) die("calloc");
    }
    out("attack_start=1\n");
    uint64_t sent = 0;
    int rounds = 1;
    /* first round: squat the service before its provider offers it */
    for (int i = ua; i < ua + n; i++) m4_round_unregistered(i, caller, &sent);
    for (int i = ra; i < ra + n; i++) m4_round_registered(i, 1, &sent);
    loop(3000, m4_all_answered);
    m4_named(&m, TERN_RDV_CALL, m4_service, TOK_NONE, 0);
    m.method = (const uint8_t *)"m", m.method_len = 1;
    m.has_call_id = 1, m.call_id = 1;
    m.payload = (const uint8_t *)"legit", m.payload_len = 5, m.has_payload = 1;
    int nosvc_before;
    m4_legit(caller, &m, TERN_RDV_REPLY, &err);
    nosvc_before = err == TERN_RDV_E_NO_SERVICE;
    /* the legitimate provider offers the service with its token: not taken by a squatter */
    m4_named(&m, TERN_RDV_OFFER, m4_service, TOK_VALID, TERN_RDV_TOKEN_OFFER);
    int offer_ok = m4_legit(prov, &m, TERN_RDV_OFFERED, &err);
    int offer_err = err;
    /* the attack goes on, a round every 200 ms; the legitimate caller calls the service every
     * 200 ms meanwhile: every call must reach the legitimate provider */
    uint64_t t0 = now_ns(), t_hold = 0, next = t0;
    uint64_t calls = 0, call_id = 100;
    uint64_t replies0 = peers[caller].replies;
    uint64_t cerr0 = peers[caller].errors;
    for (;;) {
        uint64_t now = now_ns();
        if (t_hold && now - t0 >= (uint64_t)(secs * 1e9) &&
            now - t_hold >= (uint64_t)(opt.hold * 1e9))
            break;
        if (now >= next) {
            next += 200 * TERN_NS_PER_MS;
            for (int i = ua; i < ua + n; i++) m4_round_unregistered(i, caller, &sent);
            for (int i = ra; i < ra + n; i++) m4_round_registered(i, 0, &sent);
            rounds++;
            m4_named(&m, TERN_RDV_CALL, m4_service, TOK_NONE, 0);
            m.method = (const uint8_t *)"m", m.method_len = 1;
            m.has_call_id = 1, m.call_id = call_id++;
            m.payload = (const uint8_t *)"legit", m.payload_len = 5, m.has_payload = 1;
            m.has_timeout = 1, m.timeout_ms = 5000;
            if (rdv_send(&peers[caller], now, &m) == TERN_OK) calls++;
        }
        if (!t_hold && now - t0 > 2 * TERN_NS_PER_S) {
            out("attack_hold=1\n");
            t_hold = now;
            /* a third member joins during the attack: the group it finds holds the legitimate
             * members only */
            m4_named(&m, TERN_RDV_JOIN, m4_group, TOK_VALID, TERN_RDV_TOKEN_JOIN);
            members_joined += m4_legit(mem + 2, &m, TERN_RDV_JOINED, &err);
        }
        loop(20, NULL);
    }
    loop(3000, m4_all_answered);
    uint64_t t1 = now_ns();
    while (peers[caller].replies - replies0 + (peers[caller].errors - cerr0) < calls &&
           now_ns() - t1 < 3 * TERN_NS_PER_S)
        loop(20, NULL);
    uint64_t legit_replies = peers[caller].replies - replies0;
    uint64_t legit_call_errors = peers[caller].errors - cerr0;
    /* the directory: none of the attackers without a register token is in it (the caller asks
     * for an introduction to each: ERROR(UNKNOWN_PEER)); the provider is (control) */
    uint64_t unk0 = peers[caller].err[TERN_RDV_E_UNKNOWN_PEER];
    int dir_listed = 0;
    for (int i = ua; i < ua + n; i++) {
        tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
        memcpy(m.peer_id, peers[i].id, TERN_PEER_ID_LEN);
        m.has_peer_id = 1;
        dir_listed += m4_legit(caller, &m, TERN_RDV_PEER_INFO, &err);
    }
    uint64_t dir_unknown = peers[caller].err[TERN_RDV_E_UNKNOWN_PEER] - unk0;
    tern_rdv_msg_init(&m, TERN_RDV_INTRODUCE);
    memcpy(m.peer_id, peers[prov].id, TERN_PEER_ID_LEN);
    m.has_peer_id = 1;
    int dir_control = m4_legit(caller, &m, TERN_RDV_PEER_INFO, &err);
    /* figures */
    uint64_t matched = 0, mismatched = 0, accepted = 0, unanswered = 0, atk_calls_in = 0;
    uint64_t got[ERR_CODES] = {0};
    for (int i = ua; i < ua + 2 * n; i++) {
        expect_ring *x = peers[i].exp;
        matched += x->matched;
        mismatched += x->mismatched;
        accepted += x->accepted;
        unanswered += x->head - x->tail;
        atk_calls_in += peers[i].calls_in;
        for (int k = 0; k < ERR_CODES; k++) got[k] += x->got[k];
    }
    int atk_closed;
    count_est(ua, 2 * n, &atk_closed);
    uint64_t presence_atk = 0, joined_atk = 0, member_errors = 0;
    for (int i = mem; i < mem + 3; i++) {
        presence_atk += peers[i].presence_attacker;
        joined_atk += peers[i].joined_attacker;
        member_errors += peers[i].errors;
    }
    out("m4_attackers_unregistered=%d m4_attackers_registered=%d m4_rounds=%d "
        "m4_requests=%llu m4_answered_as_expected=%llu m4_answered_otherwise=%llu "
        "m4_attacker_accepted=%llu m4_unanswered=%llu m4_attackers_closed=%d\n",
        n, n, rounds, (unsigned long long)sent, (unsigned long long)matched,
        (unsigned long long)mismatched, (unsigned long long)accepted,
        (unsigned long long)unanswered, atk_closed);
    out("m4_err_token_required=%llu m4_err_token_forged=%llu m4_err_token_expired=%llu "
        "m4_err_not_registered=%llu m4_err_not_member=%llu m4_err_no_service=%llu "
        "m4_token_rejections=%llu\n",
        (unsigned long long)got[TERN_RDV_E_TOKEN_REQUIRED],
        (unsigned long long)got[TERN_RDV_E_TOKEN_FORGED],
        (unsigned long long)got[TERN_RDV_E_TOKEN_EXPIRED],
        (unsigned long long)got[TERN_RDV_E_NOT_REGISTERED],
        (unsigned long long)got[TERN_RDV_E_NOT_MEMBER],
        (unsigned long long)got[TERN_RDV_E_NO_SERVICE],
        (unsigned long long)(got[TERN_RDV_E_TOKEN_REQUIRED] + got[TERN_RDV_E_TOKEN_FORGED] +
                             got[TERN_RDV_E_TOKEN_EXPIRED]));
    out("m4_legit_nosvc_before_offer=%d m4_legit_offer_ok=%d m4_legit_offer_err=%d "
        "m4_legit_calls=%llu m4_legit_replies=%llu m4_legit_call_errors=%llu "
        "m4_provider_calls_in=%llu m4_attacker_calls_in=%llu\n",
        nosvc_before, offer_ok, offer_err, (unsigned long long)calls,
        (unsigned long long)legit_replies, (unsigned long long)legit_call_errors,
        (unsigned long long)peers[prov].calls_in, (unsigned long long)atk_calls_in);
    out("m4_members_joined=%d m4_group_count=%u m4_presence_of_attackers=%llu "
        "m4_joined_list_attackers=%llu m4_member_errors=%llu m4_dir_unknown=%llu "
        "m4_dir_listed=%d m4_dir_control=%d\n",
        members_joined, peers[mem + 2].joined_count, (unsigned long long)presence_atk,
        (unsigned long long)joined_atk, (unsigned long long)member_errors,
        (unsigned long long)dir_unknown, dir_listed, dir_control);
    for (int i = ua; i < ua + 2 * n; i++) {
        free(peers[i].exp);
        peers[i].exp = NULL;
    }
    finish(2 * n);
}
