// The floor of one supervisor <-> worker hop on this machine, for bench/run: two
// processes ping-pong a 64-byte message over a socketpair, as polyfaas's
// supervisor and a worker do once per invocation. Prints one line:
// "<round trips/s> <wall µs per round trip> <CPU µs per round trip, both processes>".
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000, sv[2];
    char buf[64] = {0};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) {
        close(sv[0]);
        while (read(sv[1], buf, sizeof buf) == sizeof buf && write(sv[1], buf, sizeof buf) == sizeof buf) {}
        _exit(0);
    }
    close(sv[1]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        if (write(sv[0], buf, sizeof buf) != sizeof buf || read(sv[0], buf, sizeof buf) != sizeof buf) return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    close(sv[0]);
    waitpid(child, NULL, 0);
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    double wall = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    double cpu = seconds(self.ru_utime) + seconds(self.ru_stime) + seconds(kids.ru_utime) + seconds(kids.ru_stime);
    printf("%.0f %.1f %.1f\n", n / wall, 1e6 * wall / n, 1e6 * cpu / n);
    return 0;
}
