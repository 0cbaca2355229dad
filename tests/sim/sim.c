/*
 * sim: the discrete-event network simulator (see sim.h for the model and the API).
 *
 * Design. Two binary min-heaps hold everything that can happen: arrivals (datagrams in flight,
 * keyed by arrival time and a sequence number so equal times keep insertion order) and node
 * deadlines (keyed by deadline and node id; each node knows its heap slot, so a refresh after an
 * interaction is O(log n) and nodes with no deadline are not in the heap at all). Nodes touched by
 * an arrival or an expiry go on a "dirty" list and are asked to send, and their deadline is
 * refreshed, before the clock moves again; no step scans all nodes.
 *
 * A link needs no queue of its own: a datagram's departure time is computed when it enters
 * (serialization starts when the previous datagram's ends: busy_until), its backlog in bytes is
 * derived from busy_until, and the datagram goes straight into the arrival heap. FIFO under jitter
 * is kept by never scheduling an arrival before the link's previous one, except for the packets
 * chosen for reordering. Every link has its own xoshiro256** stream derived from the run's seed
 * and the link's key, so one link's traffic does not shift another link's random choices.
 * Datagram buffers come from a free list and are reused.
 *
 * Addresses and link keys live in small chained hash tables (FNV-1a over normalised bytes).
 */
#include "sim/sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/tt.h"

/* ---------------------------------------------------------------- types */

typedef struct pkt {
    sim_packet p;
    sim_link *link; /* NULL for sim_inject */
    uint64_t epoch; /* the link's epoch when it entered: an older one was closed under it */
    struct pkt *next_free;
} pkt;

typedef struct event {
    uint64_t t;
    uint64_t seq;
    pkt *p;
} event;

enum { KEY_ADDR_ADDR = 1, KEY_NODE_ADDR, KEY_ADDR_ANY, KEY_NODE_ANY, KEY_KINDS };

typedef struct link_key {
    uint32_t kind;
    uint32_t node_id;
    tern_addr from;
    tern_addr to;
} link_key;

typedef struct blackhole {
    uint64_t from, until;
} blackhole;

struct sim_link {
    sim *s;
    link_key key;
    sim_link *hnext;
    sim_link_params p;
    int uses_default;
    tt_rng rng;
    uint64_t busy_until;   /* when the serializer is free */
    uint64_t rate_rem;     /* remainder of bits*1e9 / rate carried to the next packet */
    uint64_t last_arrival; /* FIFO floor */
    int burst_left;        /* packets still to drop in the current burst */
    int forced_pass;       /* the packet after a burst is delivered */
    int ge_bad;            /* Gilbert-Elliott state */
    uint64_t epoch;        /* sim_link_close calls so far */
    blackhole *bh;
    size_t nbh, bh_cap;
    sim_middlebox_fn mb;
    void *mb_user;
    sim_link_stats st;
};

typedef struct addr_entry {
    tern_addr a;
    sim_node *n;
    struct addr_entry *next;
} addr_entry;

struct sim_node {
    sim *s;
    const sim_node_ops *ops;
    void *node;
    unsigned id;
    tern_addr *addrs;
    size_t naddrs, addrs_cap;
    uint64_t deadline;
    size_t heap_idx; /* SIZE_MAX when not in the deadline heap */
    size_t all_idx;  /* slot in s->nodes */
    int dirty;
    uint64_t stuck_at, stuck_count;
};

struct sim {
    uint64_t seed;
    uint64_t now;
    uint64_t seq;
    int err;
    int running;
    int auto_wake;
    int in_mb;
    char errbuf[320];

    event *ev;
    size_t nev, ev_cap;

    sim_node **dl; /* deadline heap */
    size_t ndl, dl_cap;

    sim_node **nodes; /* every node, for polling at the start of a run */
    size_t nnodes, nodes_cap;
    unsigned next_id;

    sim_node **dirty;
    size_t ndirty, dirty_cap;

    addr_entry **abuckets;
    size_t nabuckets, naddrs;

    sim_link **lbuckets;
    size_t nlbuckets, nlinks;
    size_t kind_count[KEY_KINDS];
    sim_link **links; /* every link, in creation order */
    size_t links_cap;

    sim_link_params def;
    sim_middlebox_fn mb;
    void *mb_user;
    sim_trace_fn trace;
    void *trace_user;
    uint64_t trace_hash;

    pkt *free_pkts;
    uint8_t *sendbuf;
    tern_datagram dgrams[SIM_SEND_BATCH];

    uint64_t stall_expiries, stall_steps;
    uint64_t step_budget, run_steps;
    uint64_t same_time_at, same_time_steps;
    sim_stats st;
};

/* ---------------------------------------------------------------- small helpers */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, nc * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

/* Copies a into out with every byte that does not matter zeroed, so memcmp and hashing work. */
static void addr_norm(tern_addr *out, const tern_addr *a)
{
    memset(out, 0, sizeof(*out));
    if (!a)
        return;
    out->family = a->family;
    out->transport = a->transport;
    out->port = a->port;
    if (a->family == TERN_AF_INET)
        memcpy(out->ip, a->ip, 4);
    else if (a->family == TERN_AF_INET6)
        memcpy(out->ip, a->ip, 16);
}

static uint64_t fnv1a(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    /* FNV's low bits mix poorly and tables index by low bits: finish with an avalanche. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

/* A fast hash of datagram bytes (8 at a time) for the trace hash. */
static uint64_t data_hash(const uint8_t *d, size_t len)
{
    uint64_t h = len * 0x9e3779b97f4a7c15ull;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, d + i, 8);
        h = (h ^ w) * 0x87c37b91114253d5ull;
        h ^= h >> 31;
    }
    for (; i < len; i++)
        h = (h ^ d[i]) * 0x100000001b3ull;
    return h;
}

static const char *fmt_addr(const tern_addr *a, char *buf, size_t len)
{
    if (!a || a->family == TERN_AF_NONE)
        return "(none)";
    return tern_addr_format(a, buf, len);
}

__attribute__((format(printf, 3, 4))) static int fail(sim *s, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errbuf, sizeof(s->errbuf), fmt, ap);
    va_end(ap);
    s->err = err;
    fprintf(stderr, "sim: %s (t=%" PRIu64 " ns, sim seed=%" PRIu64 ")\n",
            s->errbuf, s->now, s->seed);
    return err;
}

static void trace(sim *s, sim_trace_kind kind, const char *reason, const pkt *p, unsigned node_id)
{
    uint64_t h = mix(s->trace_hash, (uint64_t)kind);
    h = mix(h, s->now);
    if (p) {
        tern_addr from, to; /* normalised: nodes may leave padding bytes uninitialised */
        addr_norm(&from, &p->p.from);
        addr_norm(&to, &p->p.to);
        h = mix(h, fnv1a(&from, sizeof(from)));
        h = mix(h, fnv1a(&to, sizeof(to)));
        h = mix(h, p->p.len);
        if (kind == SIM_TR_DELIVER)
            h = mix(h, data_hash(p->p.data, p->p.len));
    }
    if (reason)
        h = mix(h, fnv1a(reason, strlen(reason)));
    h = mix(h, node_id);
    s->trace_hash = h;
    if (s->trace) {
        sim_trace_event ev = {kind, s->now, reason, p ? &p->p.from : NULL, p ? &p->p.to : NULL,
                              p ? p->p.data : NULL, p ? p->p.len : 0, node_id};
        s->trace(s->trace_user, &ev);
    }
}

/* ---------------------------------------------------------------- packets */

static pkt *pkt_alloc(sim *s)
{
    pkt *p = s->free_pkts;
    if (p) {
        s->free_pkts = p->next_free;
    } else {
        p = malloc(sizeof(*p));
        if (!p)
            return NULL;
    }
    p->link = NULL;
    p->next_free = NULL;
    return p;
}

static void pkt_free(sim *s, pkt *p)
{
    p->next_free = s->free_pkts;
    s->free_pkts = p;
}

/* ---------------------------------------------------------------- arrival heap */

static int ev_less(const event *a, const event *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int ev_push(sim *s, uint64_t t, pkt *p)
{
    if (grow((void **)&s->ev, &s->ev_cap, s->nev + 1, sizeof(event)))
        return -1;
    event e = {t, s->seq++, p};
    size_t i = s->nev++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ev_less(&e, &s->ev[parent]))
            break;
        s->ev[i] = s->ev[parent];
        i = parent;
    }
    s->ev[i] = e;
    return 0;
}

static event ev_pop(sim *s)
{
    event top = s->ev[0];
    event last = s->ev[--s->nev];
    size_t i = 0, n = s->nev;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && ev_less(&s->ev[c + 1], &s->ev[c]))
            c++;
        if (!ev_less(&s->ev[c], &last))
            break;
        s->ev[i] = s->ev[c];
        i = c;
    }
    if (n)
        s->ev[i] = last;
    return top;
}

/* ---------------------------------------------------------------- deadline heap */

static int dl_less(const sim_node *a, const sim_node *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->id < b->id);
}

static void dl_set(sim *s, size_t i, sim_node *n)
{
    s->dl[i] = n;
    n->heap_idx = i;
}

static void dl_up(sim *s, size_t i)
{
    sim_node *n = s->dl[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!dl_less(n, s->dl[parent]))
            break;
        dl_set(s, i, s->dl[parent]);
        i = parent;
    }
    dl_set(s, i, n);
}

static void dl_down(sim *s, size_t i)
{
    sim_node *n = s->dl[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->ndl)
            break;
        if (c + 1 < s->ndl && dl_less(s->dl[c + 1], s->dl[c]))
            c++;
        if (!dl_less(s->dl[c], n))
            break;
        dl_set(s, i, s->dl[c]);
        i = c;
    }
    dl_set(s, i, n);
}

static void dl_remove(sim *s, sim_node *n)
{
    size_t i = n->heap_idx;
    if (i == SIZE_MAX)
        return;
    n->heap_idx = SIZE_MAX;
    sim_node *last = s->dl[--s->ndl];
    if (i == s->ndl)
        return;
    dl_set(s, i, last);
    dl_up(s, i);
    dl_down(s, last->heap_idx);
}

/* Sets a node's deadline and fixes its place in the heap. */
static int dl_update(sim *s, sim_node *n, uint64_t deadline)
{
    if (deadline == TERN_TIME_NEVER) {
        dl_remove(s, n);
        n->deadline = deadline;
        return 0;
    }
    if (n->heap_idx == SIZE_MAX) {
        if (grow((void **)&s->dl, &s->dl_cap, s->ndl + 1, sizeof(sim_node *)))
            return -1;
        n->deadline = deadline;
        dl_set(s, s->ndl++, n);
        dl_up(s, n->heap_idx);
        return 0;
    }
    n->deadline = deadline;
    dl_up(s, n->heap_idx);
    dl_down(s, n->heap_idx);
    return 0;
}

/* ---------------------------------------------------------------- address table */

static size_t addr_bucket(const sim *s, const tern_addr *norm)
{
    return (size_t)(fnv1a(norm, sizeof(*norm)) & (s->nabuckets - 1));
}

static addr_entry **addr_find(const sim *s, const tern_addr *a)
{
    tern_addr norm;
    addr_norm(&norm, a);
    addr_entry **pp = &s->abuckets[addr_bucket(s, &norm)];
    while (*pp && memcmp(&(*pp)->a, &norm, sizeof(norm)) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int addr_rehash(sim *s, size_t nb)
{
    addr_entry **nbk = calloc(nb, sizeof(*nbk));
    if (!nbk)
        return -1;
    for (size_t i = 0; i < s->nabuckets; i++) {
        addr_entry *e = s->abuckets[i];
        while (e) {
            addr_entry *next = e->next;
            size_t b = (size_t)(fnv1a(&e->a, sizeof(e->a)) & (nb - 1));
            e->next = nbk[b];
            nbk[b] = e;
            e = next;
        }
    }
    free(s->abuckets);
    s->abuckets = nbk;
    s->nabuckets = nb;
    return 0;
}

static int addr_insert(sim *s, const tern_addr *a, sim_node *n)
{
    if (s->naddrs + 1 > s->nabuckets && addr_rehash(s, s->nabuckets * 2))
        return SIM_ERR_NOMEM;
    addr_entry **pp = addr_find(s, a);
    if (*pp)
        return SIM_ERR_INVALID;
    addr_entry *e = malloc(sizeof(*e));
    if (!e)
        return SIM_ERR_NOMEM;
    addr_norm(&e->a, a);
    e->n = n;
    e->next = NULL;
    *pp = e;
    s->naddrs++;
    return SIM_OK;
}

static void addr_erase(sim *s, const tern_addr *a)
{
    addr_entry **pp = addr_find(s, a);
    if (*pp) {
        addr_entry *e = *pp;
        *pp = e->next;
        free(e);
        s->naddrs--;
    }
}

/* ---------------------------------------------------------------- link table */

static uint64_t key_hash(const link_key *k)
{
    return fnv1a(k, sizeof(*k));
}

static void key_make(link_key *k, int kind, unsigned node_id, const tern_addr *from,
                     const tern_addr *to)
{
    memset(k, 0, sizeof(*k));
    k->kind = (uint32_t)kind;
    k->node_id = node_id;
    addr_norm(&k->from, from);
    addr_norm(&k->to, to);
}

static sim_link *link_find(const sim *s, const link_key *k)
{
    if (!s->kind_count[k->kind])
        return NULL;
    sim_link *l = s->lbuckets[key_hash(k) & (s->nlbuckets - 1)];
    while (l && memcmp(&l->key, k, sizeof(*k)) != 0)
        l = l->hnext;
    return l;
}

static int link_rehash(sim *s, size_t nb)
{
    sim_link **nbk = calloc(nb, sizeof(*nbk));
    if (!nbk)
        return -1;
    for (size_t i = 0; i < s->nlinks; i++) {
        sim_link *l = s->links[i];
        size_t b = (size_t)(key_hash(&l->key) & (nb - 1));
        l->hnext = nbk[b];
        nbk[b] = l;
    }
    free(s->lbuckets);
    s->lbuckets = nbk;
    s->nlbuckets = nb;
    return 0;
}

static sim_link *link_create(sim *s, const link_key *k)
{
    if (s->nlinks + 1 > s->nlbuckets && link_rehash(s, s->nlbuckets * 2))
        return NULL;
    if (grow((void **)&s->links, &s->links_cap, s->nlinks + 1, sizeof(sim_link *)))
        return NULL;
    sim_link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->s = s;
    l->key = *k;
    l->p = s->def;
    l->uses_default = 1;
    tt_rng_seed(&l->rng, tt_derive_seed(s->seed, key_hash(k)));
    size_t b = (size_t)(key_hash(k) & (s->nlbuckets - 1));
    l->hnext = s->lbuckets[b];
    s->lbuckets[b] = l;
    s->links[s->nlinks++] = l;
    s->kind_count[k->kind]++;
    return l;
}

static sim_link *link_get_or_create(sim *s, const link_key *k, const sim_link_params *p)
{
    sim_link *l = link_find(s, k);
    if (!l)
        l = link_create(s, k);
    if (l && p) {
        l->p = *p;
        l->uses_default = 0;
    }
    return l;
}

/* The link for a datagram, most specific first; creates the per-pair default link. */
static sim_link *link_route(sim *s, const sim_node *sender, const tern_addr *from,
                            const tern_addr *to)
{
    link_key k;
    sim_link *l;
    key_make(&k, KEY_ADDR_ADDR, 0, from, to);
    if ((l = link_find(s, &k)))
        return l;
    if (sender) {
        link_key k2;
        key_make(&k2, KEY_NODE_ADDR, sender->id, NULL, to);
        if ((l = link_find(s, &k2)))
            return l;
    }
    link_key k3;
    key_make(&k3, KEY_ADDR_ANY, 0, from, NULL);
    if ((l = link_find(s, &k3)))
        return l;
    if (sender) {
        link_key k4;
        key_make(&k4, KEY_NODE_ANY, sender->id, NULL, NULL);
        if ((l = link_find(s, &k4)))
            return l;
    }
    return link_create(s, &k);
}

/* ---------------------------------------------------------------- link model */

int sim_link_is_down(const sim_link *l, uint64_t t)
{
    const sim_link_params *p = &l->p;
    if (p->blackhole_down_ns) {
        uint64_t period = p->blackhole_up_ns + p->blackhole_down_ns;
        if (t % period >= p->blackhole_up_ns)
            return 1;
    }
    for (size_t i = 0; i < l->nbh; i++)
        if (t >= l->bh[i].from && t < l->bh[i].until)
            return 1;
    return 0;
}

static void drop(sim *s, sim_link *l, pkt *p, const char *reason, uint64_t *counter)
{
    (void)l;
    if (counter)
        (*counter)++;
    trace(s, SIM_TR_DROP, reason, p, 0);
    pkt_free(s, p);
}

/* Decides loss for one packet under the link's loss models (draws only what is configured). */
static int link_lose(sim_link *l)
{
    const sim_link_params *p = &l->p;
    int lost = 0;
    if (p->ge_p_good_to_bad > 0 || l->ge_bad) {
        if (l->ge_bad) {
            if (tt_rng_chance(&l->rng, p->ge_p_bad_to_good))
                l->ge_bad = 0;
        } else if (tt_rng_chance(&l->rng, p->ge_p_good_to_bad)) {
            l->ge_bad = 1;
        }
        if (l->ge_bad && tt_rng_chance(&l->rng, p->ge_loss_in_bad))
            lost = 1;
    }
    if (p->burst_max > 0 && p->loss > 0) {
        if (l->burst_left > 0) {
            l->burst_left--;
            if (l->burst_left == 0)
                l->forced_pass = 1;
            return 1;
        }
        if (l->forced_pass) {
            l->forced_pass = 0;
            return lost;
        }
        /* Long-run loss L with mean burst m and one forced pass after each burst:
         * L = q*m / (1 + q*m), so the start probability is q = L / (m * (1 - L)). */
        double m = (1.0 + (double)p->burst_max) / 2.0;
        double q = p->loss >= 1.0 ? 1.0 : p->loss / (m * (1.0 - p->loss));
        if (tt_rng_chance(&l->rng, q)) {
            int len = 1 + (int)tt_rng_below(&l->rng, (uint64_t)p->burst_max);
            l->burst_left = len - 1;
            if (l->burst_left == 0)
                l->forced_pass = 1;
            return 1;
        }
        return lost;
    }
    if (tt_rng_chance(&l->rng, p->loss))
        lost = 1;
    return lost;
}

/* A packet enters link l at s->now: blackhole, MTU, queue, serialization, loss, delay, jitter,
 * reordering, duplication, corruption; survivors go into the arrival heap. */
static int link_enqueue(sim *s, sim_link *l, pkt *p)
{
    const sim_link_params *lp = &l->p;
    uint64_t now = s->now;
    l->st.sent++;
    l->st.bytes += p->p.len;
    p->link = l;
    p->epoch = l->epoch;

    if (sim_link_is_down(l, now)) {
        drop(s, l, p, "blackhole", &l->st.dropped_blackhole);
        return 0;
    }
    if (lp->mtu && p->p.len + lp->overhead_bytes > lp->mtu) {
        drop(s, l, p, "mtu", &l->st.dropped_mtu);
        return 0;
    }

    uint64_t depart = now;
    if (lp->rate_bps) {
        uint64_t size = p->p.len + lp->overhead_bytes;
        uint64_t backlog = 0;
        if (l->busy_until > now) {
            double b = (double)(l->busy_until - now) * (double)lp->rate_bps / 8e9;
            backlog = (uint64_t)(b + 0.999999);
        }
        if (lp->queue_bytes && !lp->stream && backlog + size > lp->queue_bytes) {
            drop(s, l, p, "queue", &l->st.dropped_queue);
            return 0;
        }
        uint64_t num = size * 8u * 1000000000ull + l->rate_rem;
        uint64_t tx = num / lp->rate_bps;
        l->rate_rem = num % lp->rate_bps;
        uint64_t start = l->busy_until > now ? l->busy_until : now;
        l->busy_until = start + tx;
        depart = l->busy_until;
        if (backlog + size > l->st.max_queue_bytes)
            l->st.max_queue_bytes = backlog + size;
    }

    if (lp->stream) { /* reliable and ordered: after the delay, in order */
        uint64_t arrive = depart + lp->delay_ns;
        if (arrive < l->last_arrival)
            arrive = l->last_arrival;
        l->last_arrival = arrive;
        if (ev_push(s, arrive, p)) {
            pkt_free(s, p);
            return fail(s, SIM_ERR_NOMEM, "out of memory");
        }
        return 0;
    }

    if (link_lose(l)) {
        drop(s, l, p, "loss", &l->st.dropped_loss);
        return 0;
    }

    uint64_t arrive = depart + lp->delay_ns;
    if (lp->jitter_ns)
        arrive += tt_rng_below(&l->rng, lp->jitter_ns + 1);
    if (tt_rng_chance(&l->rng, lp->reorder)) {
        uint64_t extra = lp->reorder_extra_ns;
        if (!extra)
            extra = lp->jitter_ns * 2 > TERN_NS_PER_MS ? lp->jitter_ns * 2 : TERN_NS_PER_MS;
        arrive += extra;
        l->st.reordered++;
    } else {
        if (arrive < l->last_arrival)
            arrive = l->last_arrival;
        l->last_arrival = arrive;
    }

    pkt *dup = NULL;
    if (tt_rng_chance(&l->rng, lp->duplicate)) {
        dup = pkt_alloc(s);
        if (!dup)
            return fail(s, SIM_ERR_NOMEM, "out of memory");
        dup->p = p->p;
        dup->link = l;
        dup->epoch = p->epoch;
        l->st.duplicated++;
    }
    if (p->p.len && tt_rng_chance(&l->rng, lp->corrupt)) {
        uint64_t bit = tt_rng_below(&l->rng, (uint64_t)p->p.len * 8u);
        p->p.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        l->st.corrupted++;
    }
    if (ev_push(s, arrive, p)) {
        pkt_free(s, p);
        if (dup)
            pkt_free(s, dup);
        return fail(s, SIM_ERR_NOMEM, "out of memory");
    }
    if (dup && ev_push(s, arrive, dup)) {
        pkt_free(s, dup);
        return fail(s, SIM_ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* A datagram leaves a node (or sim_transmit): middleboxes, then the link. Takes p. */
static int transmit(sim *s, const sim_node *sender, pkt *p, int skip_mb)
{
    s->st.datagrams_sent++;
    trace(s, SIM_TR_SEND, NULL, p, 0);
    skip_mb = skip_mb || s->in_mb;
    if (!skip_mb && s->mb) {
        s->in_mb = 1;
        int r = s->mb(s->mb_user, s, s->now, &p->p);
        s->in_mb = 0;
        if (p->p.len > TERN_MAX_DATAGRAM)
            p->p.len = TERN_MAX_DATAGRAM;
        if (r == SIM_DROP) {
            drop(s, NULL, p, "middlebox", &s->st.dropped_middlebox);
            return 0;
        }
    }
    sim_link *l = link_route(s, sender, &p->p.from, &p->p.to);
    if (!l) {
        pkt_free(s, p);
        return fail(s, SIM_ERR_NOMEM, "out of memory");
    }
    if (!skip_mb && l->mb) {
        s->in_mb = 1;
        int r = l->mb(l->mb_user, s, s->now, &p->p);
        s->in_mb = 0;
        if (p->p.len > TERN_MAX_DATAGRAM)
            p->p.len = TERN_MAX_DATAGRAM;
        if (r == SIM_DROP) {
            l->st.sent++;
            l->st.bytes += p->p.len;
            drop(s, l, p, "middlebox", &l->st.dropped_middlebox);
            return 0;
        }
    }
    return link_enqueue(s, l, p);
}

/* ---------------------------------------------------------------- public: setup */

void sim_link_params_init(sim_link_params *p)
{
    memset(p, 0, sizeof(*p));
}

sim *sim_new(uint64_t seed)
{
    sim *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->seed = seed;
    s->auto_wake = 1;
    s->stall_expiries = 1000;
    s->stall_steps = 10000000;
    s->step_budget = 200000000;
    s->same_time_at = TERN_TIME_NEVER;
    s->trace_hash = mix(0x7465726e73696dull, seed);
    s->nabuckets = 64;
    s->nlbuckets = 64;
    s->abuckets = calloc(s->nabuckets, sizeof(*s->abuckets));
    s->lbuckets = calloc(s->nlbuckets, sizeof(*s->lbuckets));
    s->sendbuf = malloc(SIM_SEND_BUF);
    if (!s->abuckets || !s->lbuckets || !s->sendbuf) {
        sim_del(s);
        return NULL;
    }
    return s;
}

void sim_del(sim *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nev; i++)
        free(s->ev[i].p);
    free(s->ev);
    while (s->free_pkts) {
        pkt *p = s->free_pkts;
        s->free_pkts = p->next_free;
        free(p);
    }
    for (size_t i = 0; i < s->nnodes; i++) {
        free(s->nodes[i]->addrs);
        free(s->nodes[i]);
    }
    free(s->nodes);
    free(s->dl);
    free(s->dirty);
    for (size_t i = 0; i < s->nabuckets && s->abuckets; i++) {
        addr_entry *e = s->abuckets[i];
        while (e) {
            addr_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(s->abuckets);
    for (size_t i = 0; i < s->nlinks; i++) {
        free(s->links[i]->bh);
        free(s->links[i]);
    }
    free(s->links);
    free(s->lbuckets);
    free(s->sendbuf);
    free(s);
}

uint64_t sim_now(const sim *s)
{
    return s->now;
}

uint64_t sim_seed(const sim *s)
{
    return s->seed;
}

uint64_t sim_derive_seed(const sim *s, uint64_t stream)
{
    return tt_derive_seed(s->seed ^ 0x6e6f6465ull /* "node" */, stream);
}

void sim_node_wake(sim *s, sim_node *n)
{
    if (n->dirty)
        return;
    if (grow((void **)&s->dirty, &s->dirty_cap, s->ndirty + 1, sizeof(sim_node *))) {
        fail(s, SIM_ERR_NOMEM, "out of memory");
        return;
    }
    n->dirty = 1;
    s->dirty[s->ndirty++] = n;
}

sim_node *sim_add_node(sim *s, const sim_node_ops *ops, void *node, const tern_addr *addr)
{
    if (grow((void **)&s->nodes, &s->nodes_cap, s->nnodes + 1, sizeof(sim_node *)))
        return NULL;
    sim_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->s = s;
    n->ops = ops;
    n->node = node;
    n->id = ++s->next_id;
    n->heap_idx = SIZE_MAX;
    n->deadline = TERN_TIME_NEVER;
    n->stuck_at = TERN_TIME_NEVER;
    if (sim_node_add_addr(s, n, addr) != SIM_OK) {
        free(n->addrs);
        free(n);
        return NULL;
    }
    n->all_idx = s->nnodes;
    s->nodes[s->nnodes++] = n;
    sim_node_wake(s, n);
    return n;
}

int sim_node_add_addr(sim *s, sim_node *n, const tern_addr *addr)
{
    if (!addr)
        return SIM_ERR_INVALID;
    if (grow((void **)&n->addrs, &n->addrs_cap, n->naddrs + 1, sizeof(tern_addr)))
        return SIM_ERR_NOMEM;
    int rc = addr_insert(s, addr, n);
    if (rc != SIM_OK)
        return rc;
    addr_norm(&n->addrs[n->naddrs++], addr);
    return SIM_OK;
}

int sim_node_del_addr(sim *s, sim_node *n, const tern_addr *addr)
{
    addr_entry **pp = addr_find(s, addr);
    if (!*pp || (*pp)->n != n)
        return SIM_ERR_INVALID;
    tern_addr norm;
    addr_norm(&norm, addr);
    for (size_t i = 0; i < n->naddrs; i++) {
        if (memcmp(&n->addrs[i], &norm, sizeof(norm)) == 0) {
            memmove(&n->addrs[i], &n->addrs[i + 1], (n->naddrs - i - 1) * sizeof(tern_addr));
            n->naddrs--;
            break;
        }
    }
    addr_erase(s, addr);
    return SIM_OK;
}

void sim_node_remove(sim *s, sim_node *n)
{
    while (n->naddrs)
        sim_node_del_addr(s, n, &n->addrs[n->naddrs - 1]);
    dl_remove(s, n);
    for (size_t i = 0; i < s->ndirty; i++)
        if (s->dirty[i] == n)
            s->dirty[i] = NULL;
    s->nodes[n->all_idx] = s->nodes[--s->nnodes];
    s->nodes[n->all_idx]->all_idx = n->all_idx;
    free(n->addrs);
    free(n);
}

sim_node *sim_node_at(const sim *s, const tern_addr *addr)
{
    addr_entry **pp = addr_find(s, addr);
    return *pp ? (*pp)->n : NULL;
}

void *sim_node_ptr(const sim_node *n)
{
    return n->node;
}

unsigned sim_node_id(const sim_node *n)
{
    return n->id;
}

const tern_addr *sim_node_addr(const sim_node *n)
{
    return n->naddrs ? &n->addrs[0] : NULL;
}

void sim_set_default_link(sim *s, const sim_link_params *p)
{
    s->def = *p;
    for (size_t i = 0; i < s->nlinks; i++)
        if (s->links[i]->uses_default)
            s->links[i]->p = *p;
}

sim_link *sim_link_set(sim *s, const tern_addr *from, const tern_addr *to,
                       const sim_link_params *p)
{
    link_key k;
    key_make(&k, to ? KEY_ADDR_ADDR : KEY_ADDR_ANY, 0, from, to);
    return link_get_or_create(s, &k, p);
}

sim_link *sim_link_set_node(sim *s, const sim_node *from, const tern_addr *to,
                            const sim_link_params *p)
{
    link_key k;
    key_make(&k, to ? KEY_NODE_ADDR : KEY_NODE_ANY, from->id, NULL, to);
    return link_get_or_create(s, &k, p);
}

sim_link *sim_link_set_both(sim *s, const tern_addr *a, const tern_addr *b,
                            const sim_link_params *p)
{
    sim_link *l = sim_link_set(s, a, b, p);
    if (!l || !sim_link_set(s, b, a, p))
        return NULL;
    return l;
}

void sim_link_set_params(sim_link *l, const sim_link_params *p)
{
    l->p = *p;
    l->uses_default = 0;
}

const sim_link_params *sim_link_get_params(const sim_link *l)
{
    return &l->p;
}

void sim_link_close(sim_link *l)
{
    l->epoch++;
    l->busy_until = 0;
    l->last_arrival = 0;
    l->rate_rem = 0;
}

int sim_link_blackhole(sim_link *l, uint64_t from_ns, uint64_t until_ns)
{
    if (grow((void **)&l->bh, &l->bh_cap, l->nbh + 1, sizeof(blackhole)))
        return SIM_ERR_NOMEM;
    l->bh[l->nbh].from = from_ns;
    l->bh[l->nbh].until = until_ns;
    l->nbh++;
    return SIM_OK;
}

const sim_link_stats *sim_link_get_stats(const sim_link *l)
{
    return &l->st;
}

sim_link *sim_link_lookup(sim *s, const tern_addr *from, const tern_addr *to)
{
    return link_route(s, sim_node_at(s, from), from, to);
}

void sim_total_link_stats(const sim *s, sim_link_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < s->nlinks; i++) {
        const sim_link_stats *st = &s->links[i]->st;
        out->sent += st->sent;
        out->delivered += st->delivered;
        out->dropped_loss += st->dropped_loss;
        out->dropped_queue += st->dropped_queue;
        out->dropped_blackhole += st->dropped_blackhole;
        out->dropped_mtu += st->dropped_mtu;
        out->dropped_middlebox += st->dropped_middlebox;
        out->dropped_closed += st->dropped_closed;
        out->unroutable += st->unroutable;
        out->duplicated += st->duplicated;
        out->corrupted += st->corrupted;
        out->reordered += st->reordered;
        out->bytes += st->bytes;
        out->bytes_delivered += st->bytes_delivered;
        if (st->max_queue_bytes > out->max_queue_bytes)
            out->max_queue_bytes = st->max_queue_bytes;
    }
}

void sim_get_stats(const sim *s, sim_stats *out)
{
    *out = s->st;
}

void sim_set_middlebox(sim *s, sim_middlebox_fn fn, void *user)
{
    s->mb = fn;
    s->mb_user = user;
}

void sim_link_set_middlebox(sim_link *l, sim_middlebox_fn fn, void *user)
{
    l->mb = fn;
    l->mb_user = user;
}

int sim_transmit(sim *s, const tern_addr *from, const tern_addr *to, const uint8_t *data,
                 size_t len)
{
    if (len > TERN_MAX_DATAGRAM || !from || !to)
        return SIM_ERR_INVALID;
    pkt *p = pkt_alloc(s);
    if (!p)
        return SIM_ERR_NOMEM;
    p->p.from = *from;
    p->p.to = *to;
    p->p.len = len;
    if (len)
        memcpy(p->p.data, data, len);
    return transmit(s, sim_node_at(s, from), p, 0);
}

int sim_inject(sim *s, uint64_t at, const tern_addr *from, const tern_addr *to,
               const uint8_t *data, size_t len)
{
    if (len > TERN_MAX_DATAGRAM || !from || !to)
        return SIM_ERR_INVALID;
    pkt *p = pkt_alloc(s);
    if (!p)
        return SIM_ERR_NOMEM;
    p->p.from = *from;
    p->p.to = *to;
    p->p.len = len;
    if (len)
        memcpy(p->p.data, data, len);
    if (ev_push(s, at > s->now ? at : s->now, p)) {
        pkt_free(s, p);
        return SIM_ERR_NOMEM;
    }
    s->st.injected++;
    return SIM_OK;
}

void sim_set_trace(sim *s, sim_trace_fn fn, void *user)
{
    s->trace = fn;
    s->trace_user = user;
}

uint64_t sim_trace_hash(const sim *s)
{
    return s->trace_hash;
}

const char *sim_error(const sim *s)
{
    return s->errbuf;
}

void sim_set_stall_limits(sim *s, uint64_t expiries, uint64_t steps)
{
    s->stall_expiries = expiries;
    s->stall_steps = steps;
}

void sim_set_step_budget(sim *s, uint64_t items)
{
    s->step_budget = items;
}

void sim_set_auto_wake(sim *s, int on)
{
    s->auto_wake = on;
}

/* ---------------------------------------------------------------- the loop */

/* Lets one node send until it has nothing, then refreshes its deadline. */
static int node_flush(sim *s, sim_node *n)
{
    char abuf[64];
    uint64_t total = 0;
    if (n->ops->send) {
        for (;;) {
            int k = n->ops->send(n->node, s->now, s->dgrams, SIM_SEND_BATCH, s->sendbuf,
                                 SIM_SEND_BUF);
            if (k == 0)
                break;
            if (k < 0 || k > SIM_SEND_BATCH)
                return fail(s, SIM_ERR_NODE, "node %u (%s): send returned %d", n->id,
                            fmt_addr(sim_node_addr(n), abuf, sizeof(abuf)), k);
            for (int i = 0; i < k; i++) {
                const tern_datagram *d = &s->dgrams[i];
                if (d->len > TERN_MAX_DATAGRAM || (d->len && !d->data))
                    return fail(s, SIM_ERR_NODE, "node %u (%s): datagram of %zu bytes", n->id,
                                fmt_addr(sim_node_addr(n), abuf, sizeof(abuf)), d->len);
                pkt *p = pkt_alloc(s);
                if (!p)
                    return fail(s, SIM_ERR_NOMEM, "out of memory");
                if (d->local.family == TERN_AF_NONE && n->naddrs)
                    p->p.from = n->addrs[0];
                else
                    p->p.from = d->local;
                p->p.to = d->remote;
                p->p.len = d->len;
                if (d->len)
                    memcpy(p->p.data, d->data, d->len);
                int rc = transmit(s, n, p, 0);
                if (rc < 0)
                    return rc;
            }
            total += (uint64_t)k;
            if (total > 1000000)
                return fail(s, SIM_ERR_STUCK,
                            "node %u (%s): sent over 1,000,000 datagrams at one instant",
                            n->id, fmt_addr(sim_node_addr(n), abuf, sizeof(abuf)));
        }
    }
    uint64_t d = n->ops->next_deadline ? n->ops->next_deadline(n->node) : TERN_TIME_NEVER;
    if (dl_update(s, n, d))
        return fail(s, SIM_ERR_NOMEM, "out of memory");
    return SIM_OK;
}

static int flush_dirty(sim *s)
{
    for (size_t i = 0; i < s->ndirty; i++) {
        sim_node *n = s->dirty[i];
        if (!n)
            continue;
        n->dirty = 0;
        int rc = node_flush(s, n);
        if (rc < 0)
            return rc;
    }
    s->ndirty = 0;
    return s->err;
}

static uint64_t next_time(const sim *s)
{
    uint64_t t = TERN_TIME_NEVER;
    if (s->nev)
        t = s->ev[0].t;
    if (s->ndl && s->dl[0]->deadline < t)
        t = s->dl[0]->deadline;
    return t;
}

/* Runs the earliest item (an arrival on a tie) at time t (>= now). */
static int step(sim *s, uint64_t t)
{
    char abuf[64];
    if (t < s->now)
        t = s->now;
    if (t == s->same_time_at) {
        if (++s->same_time_steps > s->stall_steps)
            return fail(s, SIM_ERR_STUCK,
                        "clock stuck at %" PRIu64 " ns after %" PRIu64
                        " items at that instant (a zero-delay loop between nodes?)",
                        t, s->same_time_steps - 1);
    } else {
        s->same_time_at = t;
        s->same_time_steps = 1;
    }
    if (s->step_budget && ++s->run_steps > s->step_budget)
        return fail(s, SIM_ERR_STUCK,
                    "over %" PRIu64 " items in one run (a timer creeping forward?); next item at %"
                    PRIu64 " ns",
                    s->step_budget, t);
    s->now = t;
    s->st.steps++;

    if (s->nev && s->ev[0].t <= t) {
        event e = ev_pop(s);
        pkt *p = e.p;
        sim_link *l = p->link;
        if (l && sim_link_is_down(l, t)) {
            drop(s, l, p, "blackhole", &l->st.dropped_blackhole);
            return SIM_OK;
        }
        if (l && p->epoch != l->epoch) {
            drop(s, l, p, "closed", &l->st.dropped_closed);
            return SIM_OK;
        }
        sim_node *n = sim_node_at(s, &p->p.to);
        if (!n) {
            s->st.unroutable++;
            drop(s, l, p, "unroutable", l ? &l->st.unroutable : NULL);
            return SIM_OK;
        }
        if (l) {
            l->st.delivered++;
            l->st.bytes_delivered += p->p.len;
        }
        s->st.deliveries++;
        trace(s, SIM_TR_DELIVER, NULL, p, 0);
        if (n->ops->recv)
            n->ops->recv(n->node, t, &p->p.to, &p->p.from, p->p.data, p->p.len);
        pkt_free(s, p);
        sim_node_wake(s, n);
        return s->err;
    }

    sim_node *n = s->dl[0];
    if (n->stuck_at == t) {
        if (++n->stuck_count > s->stall_expiries)
            return fail(s, SIM_ERR_STUCK,
                        "node %u (%s): deadline %" PRIu64 " does not move past now=%" PRIu64
                        " after %" PRIu64 " expiries at that instant",
                        n->id, fmt_addr(sim_node_addr(n), abuf, sizeof(abuf)), n->deadline, t,
                        n->stuck_count - 1);
    } else {
        n->stuck_at = t;
        n->stuck_count = 1;
    }
    s->st.expiries++;
    trace(s, SIM_TR_EXPIRE, NULL, NULL, n->id);
    /* Out of the heap until the flush refreshes it, so a node that forgets to re-arm is fine. */
    dl_remove(s, n);
    n->deadline = TERN_TIME_NEVER;
    if (n->ops->expire)
        n->ops->expire(n->node, t);
    sim_node_wake(s, n);
    return s->err;
}

enum { RUN_UNTIL, RUN_WHILE, RUN_QUIET };

static int run(sim *s, int mode, int (*cond)(void *), void *arg, uint64_t t_max)
{
    if (s->err)
        return s->err;
    if (s->running)
        return SIM_ERR_INVALID;
    s->running = 1;
    s->run_steps = 0;
    int rc = SIM_OK;
    if (s->auto_wake)
        for (size_t i = 0; i < s->nnodes; i++)
            sim_node_wake(s, s->nodes[i]);
    for (;;) {
        /* cond first: a node it touched (and woke) sends before the clock moves */
        if (mode == RUN_WHILE && !cond(arg)) {
            rc = SIM_OK;
            break;
        }
        rc = flush_dirty(s);
        if (rc < 0)
            break;
        if (mode == RUN_QUIET && s->nev == 0) {
            rc = SIM_OK;
            break;
        }
        uint64_t t = next_time(s);
        if (t == TERN_TIME_NEVER || t > t_max) {
            if (t_max != TERN_TIME_NEVER && t_max > s->now)
                s->now = t_max;
            rc = mode == RUN_UNTIL ? SIM_OK : SIM_TIMEOUT;
            break;
        }
        rc = step(s, t);
        if (rc < 0)
            break;
    }
    s->running = 0;
    return rc;
}

int sim_run_until(sim *s, uint64_t t)
{
    return run(s, RUN_UNTIL, NULL, NULL, t);
}

int sim_run_while(sim *s, int (*cond)(void *arg), void *arg, uint64_t t_max)
{
    return run(s, RUN_WHILE, cond, arg, t_max);
}

int sim_run_until_quiet(sim *s, uint64_t t_max)
{
    return run(s, RUN_QUIET, NULL, NULL, t_max);
}
