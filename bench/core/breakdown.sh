#!/usr/bin/env bash
# Where the bytes of the static moonlit binary go: builds the shipped binary
# with its symbol table kept (its own target dir), then prints the
# section sizes and the code (.text symbols) grouped by crate, as markdown.
#
#   bench/core/breakdown.sh [BINARY]
#
# With BINARY (an unstripped build), only analyses it. Needs binutils (nm,
# size) and python3. The grouping is by the demangled symbol path: `mlua`,
# `serde_json`, `moonlit_config`..., std/core/alloc, std's backtrace
# symbolizer (gimli, addr2line), and C code (Lua, musl) for
# unmangled symbols.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-musl
bin="${1:-}"
if [ -z "$bin" ]; then
  dir="${CARGO_TARGET_DIR:-target}/breakdown"
  CARGO_TARGET_DIR="$dir" ./build-musl.sh --keep-symbols >/dev/null
  bin="$dir/$target/release/moonlit"
fi
echo "### Sections (the shipped build with its symbols; .symtab is not in the shipped file)"
echo
echo "| section | bytes |"
echo "|---|---|"
size -A "$bin" | awk '$1 ~ /^\./ && $1 !~ /^\.(debug|comment)/ && $2 > 4096 { printf "| %s | %d |\n", $1, $2 }'
echo
nm --size-sort -S -C "$bin" | python3 -c '
import re, sys, collections
groups = collections.Counter()
for line in sys.stdin:
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 4 or parts[2] not in "tTwW":
        continue
    size, name = int(parts[1], 16), parts[3]
    rust = "::" in name
    if not rust:
        g = "C: Lua, musl (libunwind if linked)"
    elif re.search(r"gimli|addr2line|miniz_oxide|rustc_demangle|backtrace_rs|object::read", name):
        g = "std backtrace symbolizer (gimli, addr2line)"
    else:
        m = re.search(r"(mlua|serde_json|serde_core|serde|neli|rustix|nix|tz|lexopt|thiserror|moonlit_config|moonlit_net|moonlit_sys|moonlit_images|moonlit)(::|\b)", name)
        if m:
            g = {"serde_core": "serde"}.get(m.group(1), m.group(1))
        elif re.match(r"<?(std|core|alloc)\b", name) or re.search(r"\b(std|core|alloc)::", name):
            g = "std, core, alloc"
        else:
            g = "other Rust"
    groups[g] += size
total = sum(groups.values())
print("### Code (.text) by crate")
print()
print("| crate | bytes | share |")
print("|---|---|---|")
for g, v in groups.most_common():
    print(f"| {g} | {v} | {100 * v / total:.1f}% |")
print(f"| total | {total} | |")
'
# How fresh init/link-order.txt is (docs/footprint.md): its names that are
# still functions of this build, and this build's functions it lacks. New
# code lands after the file's three tiers; rerun bench/core/order.sh when
# the first count falls or the second grows.
echo
nm "$bin" | python3 -c '
import sys
have = {l.split()[-1] for l in sys.stdin if len(l.split()) == 3 and l.split()[1] in "tTwW"}
order = [l.strip() for l in open("init/link-order.txt") if l.strip()]
found = sum(1 for n in order if n in have)
print("### init/link-order.txt against this build")
print()
print(f"{found} of its {len(order)} names are functions of this build; {len(have) - found} of the build'"'"'s {len(have)} functions are not in it (placed after it).")
'
