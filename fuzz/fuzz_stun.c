/*
 * libFuzzer target for the STUN decoder and responder: every input is decoded (with and without
 * RFC 3489 allowed), its integrity checked, and answered by a responder with RFC 5780 and
 * short-term credentials; any response must itself decode and stay within RFC 8489's size.
 */
#include <stdlib.h>
#include <string.h>

#include "tern/stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tern_stun_server plain, full;
    static int ready;
    if (!ready) {
        tern_stun_server_config cfg;
        tern_stun_server_config_default(&cfg);
        tern_stun_server_init(&plain, &cfg);
        cfg.username = "user";
        cfg.password = "pass";
        cfg.has_alternate = 1;
        tern_addr_parse(&cfg.primary, "127.0.0.1:3478");
        tern_addr_parse(&cfg.alternate, "127.0.0.2:3479");
        tern_stun_server_init(&full, &cfg);
        ready = 1;
    }
    tern_stun_msg m;
    if (tern_stun_decode(&m, data, size, 1) == TERN_OK) {
        (void)tern_stun_check_integrity(&m, (const uint8_t *)"pass", 4);
        if (tern_stun_frame_len(data, size) != (int)size) abort();
    }
    (void)tern_stun_decode(&m, data, size, 0);

    tern_addr local, remote;
    tern_addr_parse(&local, "127.0.0.1:3478");
    tern_addr_parse(&remote, "127.0.0.9:5000");
    uint8_t out[2048];
    tern_stun_reply r;
    tern_stun_server *servers[2] = {&plain, &full};
    for (int i = 0; i < 2; i++) {
        int n = tern_stun_server_respond(servers[i], 0, &local, &remote, 0, data, size, out,
                                         sizeof(out), &r);
        if (n > 0) {
            if ((size_t)n > TERN_STUN_MAX_RESP_V4) abort();
            if (tern_stun_decode(&m, out, (size_t)n, 1) != TERN_OK) abort();
        }
    }
    return 0;
}
