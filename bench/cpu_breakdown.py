#!/usr/bin/env python3
"""Where a process's CPU went, by kind of work, from a `perf record` of a load figure.

    perf script -i target/perf/latency-200-host.perf.data > host.script
    python3 bench/cpu_breakdown.py host.script

Each sample is put in the first kind below that any frame of its stack belongs to (so SQLite
called from an HTTP handler counts as the store, and a JSON parse inside the store as the
store too), and the shares are printed, largest first. Multiplied by a figure's CPU per
change, they say how much of it each kind of work costs. Needs only Python 3.
"""

import collections
import re
import sys

# (kind, a pattern any frame of the stack matches), in order of precedence.
KINDS = [
    ("state store: SQLite and its file I/O", r"sqlite3|rusqlite"),
    ("mapping: wasmtime", r"wasmtime|cranelift"),
    ("webhook signature check (RSA)", r"DeliveryProof::verify|\brsa::|\bring::|aws_lc"),
    ("fingerprints (canonical JSON + SHA-256)", r"fingerprint::"),
    (
        "HTTP client and server, loopback TCP",
        r"hyper|reqwest|\bh2::|tcp_|sock_|inet_|__sys_sendto|__sys_recvfrom|\bip_|skb|tokio::net|mio::",
    ),
    ("JSON parse and serialise", r"serde_json"),
    (
        "threads: wake-ups, parking, scheduling",
        r"futex|schedule|finish_task_switch|park|epoll|Condvar|try_to_wake_up",
    ),
    ("logging and formatting", r"tracing|core::fmt"),
    ("allocator (malloc/free)", r"malloc|cfree|_int_free|realloc|unlink_chunk"),
]
OTHER = "other (cosell's own logic, tokio, std)"


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    kinds = [(name, re.compile(pattern)) for name, pattern in KINDS]
    with open(sys.argv[1], encoding="utf-8", errors="replace") as dump:
        samples = [s for s in dump.read().split("\n\n") if s.strip()]
    if not samples:
        print(f"no samples in {sys.argv[1]} (is it the output of `perf script`?)", file=sys.stderr)
        return 1
    counts = collections.Counter()
    for sample in samples:
        stack = sample.split("\n", 1)[1] if "\n" in sample else ""
        kind = next((name for name, pattern in kinds if pattern.search(stack)), OTHER)
        counts[kind] += 1
    for kind, n in counts.most_common():
        print(f"{n / len(samples) * 100:5.1f}%  {kind}")
    print(f"({len(samples)} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
