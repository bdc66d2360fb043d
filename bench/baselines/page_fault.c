// The floor of one page of a fresh WASM instance's memory on this machine, for
// bench/run: the first write to an untouched anonymous page (a page fault that
// allocates and zeroes it) and its release by madvise(MADV_DONTNEED), which is
// how wasmtime's pooling allocator resets a used memory slot for the next
// invocation. Pages are touched and released 8 at a time, as an invocation
// touches a handful. Prints one line:
// "<pages/s> <CPU µs per page, fault and release>".
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define PAGES 8

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    long page = sysconf(_SC_PAGESIZE);
    volatile char *m = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    double before = cpu_seconds();
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < PAGES; p++) m[p * page] = 1;
        if (madvise((void *)m, PAGES * page, MADV_DONTNEED) != 0) return 1;
    }
    double cpu = cpu_seconds() - before;
    printf("%.0f %.2f\n", (double)n * PAGES / cpu, 1e6 * cpu / ((double)n * PAGES));
    return 0;
}
