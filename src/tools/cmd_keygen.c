/*
 * tern keygen: makes a long-term X25519 key pair, writes the private key to a file (64 hex
 * characters, mode 0600, via tern_keyfile_write) and prints the public key in hex on stdout,
 * alone on its line so scripts can capture it. An existing file is only replaced with --force.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tern/driver.h"
#include "tools/tools.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: tern keygen [--out FILE] [--force]\n"
               "  --out FILE   where the private key goes (default tern.key), mode 0600\n"
               "  --force      replace FILE if it exists\n"
               "Prints the public key (64 hex characters): give it to clients (--server-key).\n"
               "Exit: 0 written, 1 could not write, 2 usage.\n");
}

int cmd_keygen(int argc, char **argv)
{
    const char *out = "tern.key";
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else {
            fprintf(stderr, "tern keygen: unexpected %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!force && access(out, F_OK) == 0) {
        fprintf(stderr, "tern keygen: %s exists (--force to replace it)\n", out);
        return 1;
    }
    tern_keypair kp;
    if (tern_keypair_generate(&kp) != TERN_OK) {
        fprintf(stderr, "tern keygen: cannot generate a key\n");
        return 1;
    }
    int rc = tern_keyfile_write(out, &kp);
    if (rc != TERN_OK) {
        fprintf(stderr, "tern keygen: cannot write %s: %s\n", out, strerror(errno));
        tern_keypair_wipe(&kp);
        return 1;
    }
    char hex[2 * TERN_KEY_LEN + 1];
    tern_hex_encode(kp.pub, TERN_KEY_LEN, hex);
    tern_keypair_wipe(&kp);
    printf("%s\n", hex);
    fprintf(stderr, "tern keygen: private key written to %s (mode 0600)\n", out);
    return 0;
}
