#!/bin/sh
# The long pass of images/tests/vm_powerloss.rs: ROUNDS rounds (default 20)
# of SIGKILL at a random point and of power-off while writing, plus the
# no-fsync negative control, then a summary of the per-round figures.
# Usage: bench/reliability/powerloss.sh [ROUNDS]
# Env: MOONLIT_POWER_SEED (repeat a run's delays), MOONLIT_POWER_MAX_DELAY_MS
# (default 4000), MOONLIT_BIN (prebuilt static moonlit), LOG (where the raw
# output goes; default target/powerloss-long.log).
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${1:-20}
LOG=${LOG:-target/powerloss-long.log}
mkdir -p "$(dirname "$LOG")"
images/setup.sh
start=$(date +%s)
status=0
MOONLIT_POWER_ROUNDS=$ROUNDS cargo test -p moonlit-images --test vm_powerloss \
  -- --test-threads=1 --nocapture >"$LOG" 2>&1 || status=$?
end=$(date +%s)
grep 'test result\|panicked\|FAILED' "$LOG" || true
echo "rounds per test: $ROUNDS; wall time $((end - start)) s; raw output: $LOG"
grep -o 'powerloss: [a-z]*: seed [0-9]*' "$LOG" || true
# Seeds, then one line per round: "powerloss: kill round=1 disk=file delay_ms=... key=value ...";
# the cache-disk fields (flushes, cached_at_cut, ...) are in even rounds only.
summary() { # $1 = kill | poweroff, $2.. = fields
  kind=$1; shift
  for f in "$@"; do
    vals=$(grep "^powerloss: $kind round=" "$LOG" | tr ' ' '\n' | sed -n "s/^$f=//p" | sort -n)
    [ -n "$vals" ] || continue
    echo "$vals" | awk -v k="$kind" -v f="$f" '
      { v[NR] = $1; s += $1 }
      END { printf "  %-8s %-16s n=%-3d min %-7d median %-7d max %-7d mean %.0f\n",
              k, f, NR, v[1], v[int((NR + 1) / 2)], v[NR], s / NR }'
  done
}
summary kill delay_ms killed_after_ms reported found tail round_ms flushes cached_at_cut lost_at_cut
summary poweroff delay_ms asked_after_ms at_request reported found tail round_ms flushes cached_at_cut after_cut
# Records beyond the last reported one (fsynced or written, not yet printed).
for kind in kill poweroff; do
  grep "^powerloss: $kind round=" "$LOG" | awk -v k="$kind" '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      d = f["found"] - f["reported"]; s += d; if (d > m) m = d; n++
      if (k == "poweroff") { w = f["reported"] - f["at_request"]; ws += w; if (n == 1 || w < wm) wm = w }
    } END { if (n) { printf "  %-8s found-reported   mean %.1f max %d", k, s / n, m
                     if (k == "poweroff") printf "; records fsynced after the request: mean %.0f, min %d", ws / n, wm
                     printf "\n" } }'
done
grep -o 'powerloss: nofsync .*\|powerloss: nobarrier .*outcome: [^:]*' "$LOG" || true
exit "$status"
