#!/bin/bash
# bench_event_loops.sh -- epoll against libuv for shoal-server's event loops, by measurement
# (docs/OPERATIONS.md, "Threads, and why plain epoll"). Builds bench_event_loops.c (needs
# libuv1-dev), starts the epoll and the libuv PING server on ports picked here, and runs
# redis-benchmark -t ping_mbulk -c 50 with -P 1 and -P 16 against each, alternating, RUNS
# rounds (default 3); prints "BENCH loop_ping_p<P> epoll=<ops/s> uv=<ops/s>
# ratio=epoll/uv unit=ops/s" with the medians. Usage: bench_event_loops.sh [BUILD_DIR].
set -euo pipefail

BUILD=${1:-build}
RUNS=${RUNS:-3}
THREADS=${THREADS:-$(nproc)}
SOURCE=$(dirname "$0")/bench_event_loops.c
BINARY=$BUILD/bench-event-loops
mkdir -p "$BUILD"
gcc -std=c11 -O2 -Wall -Wextra -o "$BINARY" "$SOURCE" $(pkg-config --cflags --libs libuv) -lpthread

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2> /dev/null || true; done' EXIT
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
declare -A ports
for kind in epoll uv; do
    ports[$kind]=$(free_port)
    "$BINARY" "$kind" "${ports[$kind]}" "$THREADS" &
    PIDS+=($!)
done
for kind in epoll uv; do
    for _ in $(seq 1 100); do
        [ "$(redis-cli -p "${ports[$kind]}" ping 2> /dev/null)" = PONG ] && break
        sleep 0.05
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "# epoll vs libuv $(pkg-config --modversion libuv): PING server, $THREADS loops, redis-benchmark -t ping_mbulk -c 50, median of $RUNS alternating rounds"
for pipeline in 1 16; do
    requests=$((pipeline == 1 ? 200000 : 2000000))
    declare -A results=([epoll]="" [uv]="")
    for round in $(seq 1 "$RUNS"); do
        order="epoll uv"
        [ $((round % 2)) = 0 ] && order="uv epoll"
        for kind in $order; do
            rps=$(redis-benchmark -p "${ports[$kind]}" -t ping_mbulk -c 50 -P "$pipeline" -n "$requests" --csv 2> /dev/null |
                awk -F'"' 'NR > 1 { print $4 }')
            echo "# round $round -P $pipeline $kind: $rps ops/s" >&2
            results[$kind]+=" $rps"
        done
    done
    epoll=$(echo "${results[epoll]}" | median)
    uv=$(echo "${results[uv]}" | median)
    awk -v p="$pipeline" -v e="$epoll" -v u="$uv" 'BEGIN { printf "BENCH loop_ping_p%s epoll=%s uv=%s ratio=%.2f unit=ops/s\n", p, e, u, e / u }'
done
