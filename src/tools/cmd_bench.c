/* tern bench: placeholder */
#include "tools/tools.h"
int cmd_bench(int argc, char **argv)
{
    (void)argc, (void)argv;
    return 1;
}
