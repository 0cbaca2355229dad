/* One bare connection for white-box tests of the core (see core_rig.h). */
#include "support/core_rig.h"

#include <string.h>

void core_rig_init(core_rig *g, const tern_settings *settings)
{
    memset(g, 0, sizeof(*g));
    tt_mem_init(&g->mem);
    tt_rng_seed(&g->rng, tt_seed());
    tern_endpoint_config cfg;
    tern_endpoint_config_default(&cfg);
    if (settings) cfg.settings = *settings;
    cfg.mem = &g->mem.mem;
    cfg.rand = tt_rand_fill;
    cfg.rand_user = &g->rng;
    TT_REQUIRE(tern_endpoint_new(&cfg, 0, &g->ep) == TERN_OK);
    tern_conn *c = tern__conn_new(g->ep, 0, 0);
    TT_REQUIRE(c != NULL);
    g->c = c;
    tern_addr_ipv4(&g->local, 198, 51, 100, 7, 50000);
    tern_addr_ipv4(&g->remote, 192, 0, 2, 1, 4433);
    c->path.local = g->local;
    c->path.remote = g->remote;
    c->path.validated = 1;
    static const uint8_t tx[32] = {1}, rx[32] = {2};
    c->keys.aead = TERN__WIRE_CHACHA20POLY1305;
    TT_REQUIRE(tern__conn_install_keys(c, tx, rx) == TERN_OK);
    c->state = TERN_CONN_ESTABLISHED;
    TT_REQUIRE(tern__rec_init(c, 0) == TERN_OK);
    c->rec.ready = 1;
}

void core_rig_free(core_rig *g)
{
    tern_endpoint_del(g->ep); /* frees the connection, its recovery and paths */
    g->ep = NULL;
    g->c = NULL;
    tt_mem_check_clean(&g->mem, "core rig");
}
