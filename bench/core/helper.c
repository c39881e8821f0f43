/*
 * Helper programs for bench/core/run.sh, one static binary with several
 * modes (chosen by argv[1], or by argv[0] == "run" for runsv's ./run).
 *
 *   helper stamp           (or as ./run)  crash-once service for the restart
 *                          latency figure. Works in its current directory:
 *                          appends "S <ns>" (CLOCK_MONOTONIC) to ./stamps as
 *                          the first thing main() does; on the first run
 *                          (no ./crashed yet) it sleeps ./delay_ms ms,
 *                          creates ./crashed, appends "E <ns>" and _exit(1)s;
 *                          on later runs it just waits to be killed.
 *
 *   helper orphans N MODE FIFO READY DONE
 *                          the orphan workload, run as a child of the init.
 *                          Writes READY, blocks reading FIFO until the bench
 *                          writes a byte, then makes N orphans: N times it
 *                          forks a child that forks a grandchild and exits;
 *                          it reaps its own children, so only the grandchildren
 *                          end up as orphans of PID 1. MODE "stopped": each
 *                          grandchild exits at once (the bench has stopped the
 *                          init, so they pile up as zombies). MODE "live":
 *                          each grandchild blocks on a pipe; after all exist,
 *                          DONE is written and the helper waits for a second
 *                          byte on FIFO, then closes the pipe so all N exit
 *                          together. Afterwards it waits to be killed.
 *
 *   helper reapwatch INITPID COUNTER BASELINE N stopped
 *                          host side, init stopped with SIGSTOP and holding N
 *                          zombies: checks they are there, takes t0, sends
 *                          SIGCONT, polls COUNTER every 100 us until it is
 *                          down to BASELINE, takes t1. COUNTER is a cgroup's
 *                          pids.current (one read costs microseconds; zombies
 *                          stay charged until reaped), or "-" for the number
 *                          of INITPID's children in /proc/INITPID/task/
 *                          INITPID/children (one read of 10,000 entries costs
 *                          milliseconds and holds the tasklist lock: only a
 *                          fallback).
 *   helper reapwatch INITPID COUNTER BASELINE N live FIFO
 *                          host side: takes t0, writes the release byte to
 *                          FIFO, polls as above. Prints "<ms> <polls>".
 *
 *   helper count COUNTER INITPID   prints the counter's value.
 *
 *   helper childcount PID  prints the number of children of PID (zombies
 *                          included) and how many of them are zombies.
 *
 * No timing decision is taken here: it only measures and prints.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "helper: %s: %s\n", what, strerror(errno));
	exit(111);
}

static void append_line(const char *path, char tag, long long ns)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, "%c %lld %d\n", tag, ns, (int)getpid());
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path);
	if (write(fd, buf, (size_t)n) != n)
		die("write stamps");
	close(fd);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		die(path);
	if (write(fd, text, strlen(text)) < 0)
		die(path);
	close(fd);
}

static long read_number(const char *path, long dflt)
{
	FILE *f = fopen(path, "r");
	long v = dflt;
	if (!f)
		return dflt;
	if (fscanf(f, "%ld", &v) != 1)
		v = dflt;
	fclose(f);
	return v;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int stamp(void)
{
	long long start = now_ns();
	append_line("stamps", 'S', start);
	if (access("crashed", F_OK) == 0) {
		for (;;)
			pause();
	}
	sleep_ms(read_number("delay_ms", 0));
	write_file("crashed", "1\n");
	append_line("stamps", 'E', now_ns());
	_exit(1);
}

static void read_byte(const char *fifo)
{
	char c;
	int fd = open(fifo, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(fifo);
	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
	close(fd);
}

static int orphans(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: helper orphans N stopped|live FIFO READY DONE\n");
		return 2;
	}
	long n = atol(argv[2]);
	int live = strcmp(argv[3], "live") == 0;
	const char *fifo = argv[4];
	char msg[64];
	snprintf(msg, sizeof msg, "%d\n", (int)getpid());
	write_file(argv[5], msg);
	read_byte(fifo);

	int gate[2] = { -1, -1 };
	if (live && pipe(gate) < 0)
		die("pipe");
	long made = 0;
	for (long i = 0; i < n; i++) {
		pid_t c = fork();
		if (c < 0) {
			fprintf(stderr, "helper: fork %ld: %s\n", i, strerror(errno));
			break;
		}
		if (c == 0) {
			pid_t g = fork();
			if (g == 0) {
				if (live) {
					char b;
					close(gate[1]);
					while (read(gate[0], &b, 1) < 0 && errno == EINTR)
						;
				}
				_exit(0);
			}
			_exit(g < 0 ? 1 : 0);
		}
		int st;
		while (waitpid(c, &st, 0) < 0 && errno == EINTR)
			;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			made++;
	}
	snprintf(msg, sizeof msg, "%ld\n", made);
	write_file(argv[6], msg);
	if (live) {
		close(gate[0]);
		read_byte(fifo);
		close(gate[1]); /* every grandchild sees EOF and exits */
	}
	for (;;)
		pause();
}

/* Children of pid (zombies included), from /proc/PID/task/PID/children. */
static char *children_buf;
static size_t children_cap = 1 << 22;

static long count_children(int pid, long *pids, long max)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, children_buf + len, children_cap - 1 - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		if (r == 0 || len + (size_t)r >= children_cap - 1) {
			len += (size_t)(r > 0 ? r : 0);
			break;
		}
		len += (size_t)r;
	}
	close(fd);
	children_buf[len] = 0;
	long count = 0;
	char *p = children_buf;
	while (*p) {
		while (*p == ' ' || *p == '\n')
			p++;
		if (!*p)
			break;
		long v = strtol(p, &p, 10);
		if (pids && count < max)
			pids[count] = v;
		count++;
	}
	return count;
}

static char proc_state(long pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return '?';
	ssize_t r = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (r <= 0)
		return '?';
	buf[r] = 0;
	char *p = strrchr(buf, ')');
	return (p && p[1] == ' ') ? p[2] : '?';
}

static long count_zombies(int pid, long *total)
{
	static long pids[1 << 20];
	long n = count_children(pid, pids, 1 << 20);
	long z = 0;
	*total = n;
	for (long i = 0; i < n && i < (1 << 20); i++)
		if (proc_state(pids[i]) == 'Z')
			z++;
	return z;
}

static int childcount(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long total;
	long z = count_zombies(atoi(argv[2]), &total);
	printf("%ld %ld\n", total, z);
	return total < 0;
}

/* The value of COUNTER (a pids.current file, or "-": INITPID's children). */
static long read_counter(const char *counter, int pid)
{
	if (strcmp(counter, "-") == 0)
		return count_children(pid, NULL, 0);
	char buf[32];
	int fd = open(counter, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (r <= 0)
		return -1;
	buf[r] = 0;
	return atol(buf);
}

static int count(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	long v = read_counter(argv[2], atoi(argv[3]));
	printf("%ld\n", v);
	return v < 0;
}

static int reapwatch(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: helper reapwatch INITPID COUNTER BASELINE N stopped|live [FIFO]\n");
		return 2;
	}
	int pid = atoi(argv[2]);
	const char *counter = argv[3];
	long baseline = atol(argv[4]);
	long n = atol(argv[5]);
	int live = strcmp(argv[6], "live") == 0;
	long long t0;
	if (live) {
		if (argc < 8)
			return 2;
		int fd = open(argv[7], O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			die(argv[7]);
		t0 = now_ns();
		if (write(fd, "g", 1) != 1)
			die("write fifo");
		close(fd);
	} else {
		long total;
		long z = count_zombies(pid, &total);
		long c = read_counter(counter, pid);
		if (z < n || c < baseline + n) {
			fprintf(stderr, "helper: expected %ld zombies under %d, found %ld of %ld children (counter %ld)\n", n, pid, z, total, c);
			return 1;
		}
		t0 = now_ns();
		if (kill(pid, SIGCONT) < 0)
			die("kill SIGCONT");
	}
	long polls = 0;
	long long t1;
	for (;;) {
		long c = read_counter(counter, pid);
		t1 = now_ns();
		polls++;
		if (c < 0) {
			fprintf(stderr, "helper: cannot read %s (init %d)\n", counter, pid);
			return 1;
		}
		if (c <= baseline)
			break;
		if (t1 - t0 > 120LL * 1000000000LL) {
			fprintf(stderr, "helper: %ld children still there after 120 s\n", c);
			return 1;
		}
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	printf("%.3f %ld\n", (double)(t1 - t0) / 1e6, polls);
	return 0;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strcmp(base, "run") == 0)
		return stamp();
	if (argc < 2) {
		fprintf(stderr, "usage: helper stamp|orphans|reapwatch|childcount ...\n");
		return 2;
	}
	if (strcmp(argv[1], "stamp") == 0)
		return stamp();
	children_buf = malloc(children_cap);
	if (!children_buf)
		die("malloc");
	if (strcmp(argv[1], "orphans") == 0)
		return orphans(argc, argv);
	if (strcmp(argv[1], "reapwatch") == 0)
		return reapwatch(argc, argv);
	if (strcmp(argv[1], "childcount") == 0)
		return childcount(argc, argv);
	if (strcmp(argv[1], "count") == 0)
		return count(argc, argv);
	fprintf(stderr, "helper: unknown mode %s\n", argv[1]);
	return 2;
}
