/*
 * Rendezvous server: groups (JOIN, LEAVE, GROUP_MSG), their presence events and bootstrap
 * lists. See rdv_server.c for the design.
 */
#include <string.h>

#include "rendezvous/rdv_server_int.h"

/* ---------------------------------------------------------------- groups */

static void presence(tern_rdv_server *s, rdv_group *g, const rdv_peer *who, uint8_t event,
                     uint64_t now)
{
    if (g->n == 0 || (g->n == 1 && g->members[0].p == who)) return;
    /* a large group, or one whose membership churns faster than presence_rate, hears no more
     * presence: a joiner learns the count and a bootstrap list in JOINED instead */
    if ((s->cfg.presence_max_members && g->n > s->cfg.presence_max_members) ||
        !tern__bucket_take(&s->rate.presence, &g->pres, now, 1)) {
        s->st.presence_dropped++;
        return;
    }
    tern_rdv_msg m;
    tern_rdv_msg_init(&m, TERN_RDV_PRESENCE);
    m.group = g->name, m.group_len = g->name_len;
    m.has_peer_id = m.has_event = 1;
    memcpy(m.peer_id, who->id, TERN_PEER_ID_LEN);
    m.event = event;
    size_t n = tern__rdv_encode(s, &m);
    if (n == 0) return;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->members[i].p != who)
            (void)tern__rdv_send_raw(s, g->members[i].p, now, s->out, n, EVENT);
}

static int peer_in_list(const uint8_t *ids, size_t n, const rdv_peer *p)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(ids + i * TERN_PEER_ID_LEN, p->id, TERN_PEER_ID_LEN) == 0) return 1;
    return 0;
}

/* The bootstrap list for joiner p: recent joiners first (newest first), then random members. */
static size_t bootstrap(tern_rdv_server *s, const rdv_group *g, const rdv_peer *p,
                        uint8_t ids[TERN_RDV_MAX_MEMBERS * TERN_PEER_ID_LEN])
{
    size_t n = 0;
    uint32_t nr = s->cfg.bootstrap_recent;
    for (uint32_t k = 1; k <= RECENT_MAX && n < nr; k++) {
        const rdv_peer *q = g->recent[(g->recent_pos + RECENT_MAX - k) % RECENT_MAX];
        if (q == NULL || q == p || peer_in_list(ids, n, q)) continue;
        memcpy(ids + n++ * TERN_PEER_ID_LEN, q->id, TERN_PEER_ID_LEN);
    }
    size_t want = n + s->cfg.bootstrap_random;
    if (want > TERN_RDV_MAX_MEMBERS) want = TERN_RDV_MAX_MEMBERS;
    if (g->n <= want + 1) { /* small group: everyone */
        for (uint32_t i = 0; i < g->n && n < want; i++) {
            const rdv_peer *q = g->members[i].p;
            if (q != p && !peer_in_list(ids, n, q))
                memcpy(ids + n++ * TERN_PEER_ID_LEN, q->id, TERN_PEER_ID_LEN);
        }
        return n;
    }
    for (size_t tries = 0; n < want && tries < 4 * want; tries++) {
        const rdv_peer *q = g->members[rand_below(s, g->n)].p;
        if (q != p && !peer_in_list(ids, n, q))
            memcpy(ids + n++ * TERN_PEER_ID_LEN, q->id, TERN_PEER_ID_LEN);
    }
    return n;
}

/* JOIN and LEAVE share one bucket per peer (join_rate): each changes the membership that every
 * other member hears about. Over it: ERROR(RATE_LIMITED), nothing changes. */
static int join_rate_ok(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (tern__bucket_take(&s->rate.join, &p->join, now, 1)) return 1;
    s->st.rate_dropped_join++;
    tern__rdv_send_error(s, p, now, TERN_RDV_E_RATE_LIMITED, m);
    return 0;
}

void tern__rdv_on_join(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    if (tern__rdv_token_gate(s, p, now, m, s->cfg.require_join_token, TERN_RDV_TOKEN_JOIN, m->group,
                             m->group_len))
        return;
    if (!join_rate_ok(s, p, now, m)) return;
    rdv_group *g = tern__map_find(&s->groups, m->group, m->group_len);
    int is_member = 0;
    for (uint32_t i = 0; g && i < p->n_groups; i++) is_member |= p->groups[i].g == g;
    if (!is_member) {
        if (p->n_groups >= s->cfg.max_groups_per_peer ||
            (g == NULL && s->cfg.max_groups && s->st.groups >= s->cfg.max_groups) ||
            (g != NULL && s->cfg.max_group_members && g->n >= s->cfg.max_group_members)) {
            s->st.limit_groups++;
            tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        /* the arrays that grow now: the peer's memberships, the group's members, the map of
         * groups */
        uint64_t grow = p->n_groups == p->cap_groups
                            ? (p->cap_groups ? 2 * p->cap_groups : 2) * sizeof(membership)
                            : 0;
        if (g == NULL) grow += 4 * sizeof(member) + tern__map_put_bytes(&s->groups);
        else if (g->n == g->cap) grow += 2 * (uint64_t)g->cap * sizeof(member);
        if (!can_hold_grow(s, p, membership_cost(m->group_len), grow)) {
            tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
            return;
        }
        if (p->n_groups == p->cap_groups) {
            uint32_t nc = p->cap_groups ? 2 * p->cap_groups : 2;
            membership *ng = alloc(s, nc * sizeof(*ng));
            if (ng == NULL) goto nomem;
            if (p->n_groups) memcpy(ng, p->groups, p->n_groups * sizeof(*ng));
            if (p->groups) release(s, p->groups, p->cap_groups * sizeof(*ng));
            p->groups = ng;
            p->cap_groups = nc;
        }
        if (g == NULL) {
            g = alloc(s, sizeof(*g) + m->group_len);
            if (g == NULL) goto nomem;
            memset(g, 0, sizeof(*g));
            g->name_len = (uint8_t)m->group_len;
            memcpy(g->name, m->group, m->group_len);
            if (tern__map_put(&s->groups, NULL, g) != TERN_OK) {
                release(s, g, sizeof(*g) + m->group_len);
                goto nomem;
            }
            s->st.groups++;
        }
        if (g->n == g->cap) {
            uint32_t nc = g->cap ? 2 * g->cap : 4;
            member *nm = alloc(s, nc * sizeof(*nm));
            if (nm == NULL) {
                if (g->n == 0) { /* just made: undo */
                    tern__map_del(&s->groups, NULL, g);
                    release(s, g, sizeof(*g) + g->name_len);
                    s->st.groups--;
                }
                goto nomem;
            }
            if (g->n) memcpy(nm, g->members, g->n * sizeof(*nm));
            if (g->members) release(s, g->members, g->cap * sizeof(*nm));
            g->members = nm;
            g->cap = nc;
        }
        g->members[g->n] = (member){p, p->n_groups};
        p->groups[p->n_groups++] = (membership){g, g->n++};
        charge(s, p, membership_cost(g->name_len));
        s->st.joins++;
    }
    uint8_t ids[TERN_RDV_MAX_MEMBERS * TERN_PEER_ID_LEN];
    tern_rdv_msg r;
    tern_rdv_msg_init(&r, TERN_RDV_JOINED);
    r.group = g->name, r.group_len = g->name_len;
    r.n_members = bootstrap(s, g, p, ids);
    r.members = ids;
    r.has_count = 1;
    r.count = g->n;
    tern__rdv_send_msg(s, p, now, &r);
    if (!is_member) {
        g->recent[g->recent_pos] = p;
        g->recent_pos = (g->recent_pos + 1) % RECENT_MAX;
        presence(s, g, p, TERN_RDV_PRESENCE_JOIN, now);
    }
    return;
nomem:
    tern__rdv_send_error(s, p, now, TERN_RDV_E_LIMIT, m);
}

/* Removes p's membership midx (swap-remove on both sides), tells the others, frees an empty
 * group. */
void tern__rdv_group_remove(tern_rdv_server *s, rdv_peer *p, uint32_t midx, uint64_t now)
{
    rdv_group *g = p->groups[midx].g;
    uint32_t gi = p->groups[midx].idx;
    /* the group's member array */
    g->members[gi] = g->members[--g->n];
    if (gi < g->n) g->members[gi].p->groups[g->members[gi].idx].idx = gi;
    /* the peer's membership array */
    p->groups[midx] = p->groups[--p->n_groups];
    if (midx < p->n_groups) p->groups[midx].g->members[p->groups[midx].idx].idx = midx;
    uncharge(p, membership_cost(g->name_len));
    for (uint32_t k = 0; k < RECENT_MAX; k++)
        if (g->recent[k] == p) g->recent[k] = NULL;
    s->st.leaves++;
    if (g->n == 0) {
        tern__map_del(&s->groups, NULL, g);
        if (g->members) release(s, g->members, g->cap * sizeof(*g->members));
        release(s, g, sizeof(*g) + g->name_len);
        s->st.groups--;
        return;
    }
    /* presence() skips `who`; p is no longer a member, so every remaining member hears it */
    presence(s, g, p, TERN_RDV_PRESENCE_LEAVE, now);
}

static int find_membership(const rdv_peer *p, const tern_rdv_msg *m, uint32_t *midx)
{
    for (uint32_t i = 0; i < p->n_groups; i++) {
        const rdv_group *g = p->groups[i].g;
        if (g->name_len == m->group_len && memcmp(g->name, m->group, m->group_len) == 0) {
            *midx = i;
            return 1;
        }
    }
    return 0;
}

void tern__rdv_on_leave(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    uint32_t midx;
    if (!find_membership(p, m, &midx)) {
        tern__rdv_send_error(s, p, now, TERN_RDV_E_NOT_MEMBER, m);
        return;
    }
    if (!join_rate_ok(s, p, now, m)) return;
    tern__rdv_group_remove(s, p, midx, now);
}

void tern__rdv_on_group_msg(tern_rdv_server *s, rdv_peer *p, uint64_t now, const tern_rdv_msg *m)
{
    uint32_t midx;
    if (!find_membership(p, m, &midx)) {
        tern__rdv_send_error(s, p, now, TERN_RDV_E_NOT_MEMBER, m);
        return;
    }
    rdv_group *g = p->groups[midx].g;
    /* the peer's bucket first, so one noisy peer cannot spend the group's */
    int ok_peer = tern__bucket_take(&s->rate.peer, &p->rl, now, 1);
    int ok_group = ok_peer && tern__bucket_take(&s->rate.group, &g->rl, now, 1);
    if (!ok_group) {
        if (!ok_peer) s->st.rate_dropped_peer++;
        else s->st.rate_dropped_group++;
        p->rate_drops++;
        tern_rdv_msg e;
        tern_rdv_msg_error(&e, TERN_RDV_GROUP_MSG, TERN_RDV_E_RATE_LIMITED);
        e.group = g->name, e.group_len = g->name_len;
        e.has_count = 1;
        e.count = p->rate_drops;
        tern__rdv_send_msg(s, p, now, &e);
        return;
    }
    tern_rdv_msg f;
    tern_rdv_msg_init(&f, TERN_RDV_GROUP_MSG);
    f.group = g->name, f.group_len = g->name_len;
    f.has_peer_id = 1;
    memcpy(f.peer_id, p->id, TERN_PEER_ID_LEN);
    f.payload = m->payload, f.payload_len = m->payload_len, f.has_payload = 1;
    size_t n = tern__rdv_encode(s, &f);
    if (n == 0) return;
    s->st.group_msgs++;
    for (uint32_t i = 0; i < g->n; i++)
        if (g->members[i].p != p && tern__rdv_send_raw(s, g->members[i].p, now, s->out, n, EVENT))
            s->st.fanout_msgs++;
}
