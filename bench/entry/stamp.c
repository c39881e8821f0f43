/*
 * Timestamps for bench/entry/run.sh (static, musl-gcc).
 *
 *   stamp launch OUT PROG ARGS...  writes CLOCK_MONOTONIC (ns) to OUT, then
 *                                  execv(PROG, ARGS): the init under test
 *                                  starts in this very process.
 *   stamp child OUT                appends " <ns>\n" to OUT as the first thing
 *                                  main() does, then exits 0: the command
 *                                  the init runs.
 *
 * exec-to-child-exec = the two numbers' difference; `stamp launch OUT
 * stamp child OUT` (no init between) is the baseline of the exec itself.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void put(const char *path, int flags, long long ns, const char *pre) {
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%s%lld", pre, ns);
  int fd = open(path, flags, 0644);
  if (fd < 0 || write(fd, buf, n) != n) {
    perror(path);
    _exit(2);
  }
  close(fd);
}

int main(int argc, char **argv) {
  long long t = now_ns();
  if (argc >= 4 && strcmp(argv[1], "launch") == 0) {
    put(argv[2], O_WRONLY | O_CREAT | O_TRUNC, t, "");
    execv(argv[3], argv + 3);
    perror(argv[3]);
    return 127;
  }
  if (argc == 3 && strcmp(argv[1], "child") == 0) {
    put(argv[2], O_WRONLY | O_APPEND, t, " ");
    return 0;
  }
  fprintf(stderr, "usage: stamp launch OUT PROG ARGS... | stamp child OUT\n");
  return 2;
}
