// The floor of the many-functions rows on this machine, run by hand (it is not
// a bench/run row): one process ping-pongs a 64-byte message over a socketpair
// with N children in turn, as polyfaas's supervisor calls N functions' workers
// round-robin, and each child touches KIB KiB of its own memory (one byte per
// 64-byte line) before it answers, as a worker touches its own memory to serve
// a call. With N = 200 each child runs again only after 199 others have had the
// caches. Prints one line: the wall and machine CPU (/proc/stat, every process)
// per round trip.
//
//   gcc -O2 -o /tmp/round_robin_hop bench/baselines/round_robin_hop.c
//   /tmp/round_robin_hop N KIB ROUND_TRIPS
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// user + nice + system jiffies of the whole machine.
static long long busy(void) {
    long long user, nice, sys;
    FILE *f = fopen("/proc/stat", "r");
    if (!f || fscanf(f, "cpu %lld %lld %lld", &user, &nice, &sys) != 3) exit(1);
    fclose(f);
    return user + nice + sys;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int n = atoi(argv[1]);
    size_t bytes = (size_t)atol(argv[2]) * 1024;
    long trips = atol(argv[3]);
    if (n < 1 || trips < 1) return 2;
    int *fds = calloc(n, sizeof(int));
    if (!fds) return 1;
    char buf[64] = {0};
    for (int i = 0; i < n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
        pid_t child = fork();
        if (child < 0) return 1;
        if (child == 0) {
            close(sv[0]);
            for (int j = 0; j < i; j++) close(fds[j]);
            volatile char *mem = malloc(bytes + 1);
            if (!mem) _exit(1);
            memset((char *)mem, 1, bytes + 1);
            while (read(sv[1], buf, sizeof buf) == sizeof buf) {
                for (size_t o = 0; o < bytes; o += 64) mem[o]++;
                if (write(sv[1], buf, sizeof buf) != sizeof buf) break;
            }
            _exit(0);
        }
        close(sv[1]);
        fds[i] = sv[0];
    }
    // Every child once before measuring: their memory is touched, their pages are in.
    for (long k = 0; k < 10L * n; k++) {
        int i = k % n;
        if (write(fds[i], buf, sizeof buf) != sizeof buf || read(fds[i], buf, sizeof buf) != sizeof buf) return 1;
    }
    struct timespec a, b;
    long long before = busy();
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long k = 0; k < trips; k++) {
        int i = k % n;
        if (write(fds[i], buf, sizeof buf) != sizeof buf || read(fds[i], buf, sizeof buf) != sizeof buf) return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long after = busy();
    double wall = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    double cpu = (after - before) / (double)sysconf(_SC_CLK_TCK);
    printf("N=%d %zu KiB: %.1f µs wall, %.1f µs machine CPU per round trip\n", n, bytes / 1024, wall / trips * 1e6,
           cpu / trips * 1e6);
    for (int i = 0; i < n; i++) close(fds[i]);
    while (wait(NULL) > 0) {}
    return 0;
}
