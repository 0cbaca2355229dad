/*
 * tern: the command-line client. Sub-commands come from the table below, each in its own file
 * with its own --help; `tern help` lists them.
 */
#include <stdio.h>
#include <string.h>

#include "tools/tools.h"

static const tern_cmd commands[] = {
    {"stun", "print this host's public address as a STUN server sees it", cmd_stun},
    {"nat-type", "RFC 5780 NAT mapping and filtering behaviour", cmd_nat_type},
    {"loadgen", "closed-loop load generator (loadgen stun HOST:PORT, loadgen rdv ADDR:PORT)", cmd_loadgen},
    {"keygen", "write a long-term key pair, print the public key", cmd_keygen},
    {"token", "access tokens for a ternd that requires them (token new-secret | register | join "
              "| offer)",
     cmd_token},
    {"ping", "round-trip times to a tern listener (ping ADDR:PORT), or a peer (PEER_ID --via)",
     cmd_ping},
    {"send", "send a file over an encrypted connection (send FILE --to ADDR:PORT --server-key HEX)",
     cmd_send},
    {"recv", "receive one file: listen, verify its hash, store it (recv --listen ADDR:PORT)",
     cmd_recv},
    {"stream", "live video, measured per frame (stream send --to ADDR | stream recv --listen "
               "ADDR; --udp-out/--udp-in: through another transport)",
     cmd_stream},
    {"bench", "throughput and latency between two endpoints (bench --listen | --to ADDR)",
     cmd_bench},
    {"chat", "talk in a group through the rendezvous server (chat GROUP --via ADDR:PORT)",
     cmd_chat},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: tern COMMAND [options]   (tern COMMAND --help for each)\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tern: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
