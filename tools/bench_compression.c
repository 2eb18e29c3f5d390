/* Compression throughput of the static zlib, bzip2 and liblzma relocpy
 * builds, called as CPython's modules call them (one-shot buffers, default
 * levels: zlib 6, bz2 9, lzma preset 6). Built and run by
 * tools/bench_compression.py; prints one line per codec and direction:
 *   <codec> <compress|decompress> <MB/s of uncompressed data>
 * The data is 8 MiB, half words of text, half incompressible bytes, from a
 * fixed seed (the same as tools/bench_interp.py's in spirit, not in bytes). */
#include <bzlib.h>
#include <lzma.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define SIZE (8u << 20)

static uint64_t state = 1234;
static uint32_t next_random(void) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(state >> 33);
}

static void make_data(unsigned char *data) {
    static const char letters[] = "etaoinshrdlucmfw";
    size_t i = 0;
    while (i < SIZE / 2) {
        unsigned length = 2 + next_random() % 8;
        for (unsigned j = 0; j < length && i < SIZE / 2; j++) data[i++] = letters[next_random() % 16];
        if (i < SIZE / 2) data[i++] = ' ';
    }
    for (; i < SIZE; i++) data[i] = (unsigned char)next_random();
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void report(const char *what, double seconds) { printf("%s %.1f\n", what, SIZE / seconds / 1e6); }

int main(int argc, char **argv) {
    int repeat = argc > 1 ? atoi(argv[1]) : 3;
    unsigned char *data = malloc(SIZE), *packed = malloc(2 * SIZE), *back = malloc(SIZE);
    make_data(data);
    double best[6] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
    for (int r = 0; r < repeat; r++) {
        double t;
        uLongf zlen = 2 * SIZE, zback = SIZE;
        t = now(); compress2(packed, &zlen, data, SIZE, 6); t = now() - t; if (t < best[0]) best[0] = t;
        t = now(); uncompress(back, &zback, packed, zlen); t = now() - t; if (t < best[1]) best[1] = t;
        if (zback != SIZE || memcmp(back, data, SIZE)) return 1;

        unsigned blen = 2 * SIZE, bback = SIZE;
        t = now(); BZ2_bzBuffToBuffCompress((char *)packed, &blen, (char *)data, SIZE, 9, 0, 0); t = now() - t;
        if (t < best[2]) best[2] = t;
        t = now(); BZ2_bzBuffToBuffDecompress((char *)back, &bback, (char *)packed, blen, 0, 0); t = now() - t;
        if (t < best[3]) best[3] = t;
        if (bback != SIZE || memcmp(back, data, SIZE)) return 2;

        size_t xlen = 0, xin = 0, xout = 0;
        uint64_t memlimit = UINT64_MAX;
        lzma_ret encoded, decoded;
        t = now(); encoded = lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, data, SIZE, packed, &xlen, 2 * SIZE);
        t = now() - t; if (t < best[4]) best[4] = t;
        t = now(); decoded = lzma_stream_buffer_decode(&memlimit, 0, NULL, packed, &xin, xlen, back, &xout, SIZE);
        t = now() - t; if (t < best[5]) best[5] = t;
        if (encoded != LZMA_OK || decoded != LZMA_OK || xout != SIZE || memcmp(back, data, SIZE)) return 3;
    }
    report("zlib compress", best[0]);
    report("zlib decompress", best[1]);
    report("bz2 compress", best[2]);
    report("bz2 decompress", best[3]);
    report("lzma compress", best[4]);
    report("lzma decompress", best[5]);
    return 0;
}
