/* The /bin/sh of tools/verify_musl_env.py's musl root. Debian packages no
 * musl-linked shell, and uv tells musl from glibc by the loader /bin/sh names
 * (its PT_INTERP), so the root's /bin/sh is this program, linked dynamically
 * against musl. It is read, not run: run, it says so and fails. */
#include <stdio.h>

int main(void) {
    fputs("sh: this musl root has no shell (tools/musl_root_sh.c)\n", stderr);
    return 127;
}
