#!/bin/bash
# ab_server.sh -- two builds of shoal-server against each other: throughput and the
# server's own CPU per request under redis-benchmark, the two binaries alternated.
#
# On this shared 2-core machine one run of one server moves by up to 2x with the
# neighbours' load, so a change to the server is judged by pairs: each round runs A then B
# (B then A in every other round), each on a fresh data directory and a port picked here,
# and prints both. The server's CPU per request (user + system time of its process, read
# from /proc before and after the load, divided by the requests) is steadier than ops/s:
# it does not count the time the server waited for the disk or for the client.
#
# Usage: ab_server.sh path/to/old/shoal-server path/to/new/shoal-server
# Environment: ROUNDS (default 4), MODE (memory, or a sync policy: always, batch,
# periodic, none; default always), PIPELINE (redis-benchmark -P, default 16), REQUESTS
# (default 800000 pipelined, 150000 unpipelined), CLIENTS (default 50).
# Output: one "# round" line per run, then per binary the median ops/s, the median CPU per
# request and how many rounds it won. Nothing here is a BENCH line: both sides are Shoal.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: ab_server.sh OLD_SERVER NEW_SERVER" >&2; exit 2; }
A=$1
B=$2
ROUNDS=${ROUNDS:-4}
MODE=${MODE:-always}
PIPELINE=${PIPELINE:-16}
CLIENTS=${CLIENTS:-50}
if [ "$PIPELINE" -gt 1 ]; then REQUESTS=${REQUESTS:-800000}; else REQUESTS=${REQUESTS:-150000}; fi
for server in "$A" "$B"; do
    [ -x "$server" ] || { echo "ab_server: $server is not an executable" >&2; exit 1; }
done
for tool in redis-benchmark redis-cli python3; do
    command -v "$tool" > /dev/null || { echo "ab_server: $tool is missing (scripts/deps.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-ab-server.XXXXXX")
PID=""
cleanup() {
    [ -n "$PID" ] && kill -9 "$PID" 2> /dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cpu_ticks PID: user + system clock ticks of the whole process so far.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# measure LABEL SERVER: one run; appends "ops cpu_us" to $WORK/LABEL.
measure() {
    local label=$1 server=$2 port dir
    port=$(free_port)
    dir="$WORK/data-$label"
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$MODE" = memory ]; then
        SHOAL_MODE=memory "$server" --bind 127.0.0.1 --port "$port" > "$WORK/$label.log" 2>&1 &
    else
        "$server" --bind 127.0.0.1 --port "$port" --dir "$dir" --sync "$MODE" \
            > "$WORK/$label.log" 2>&1 &
    fi
    PID=$!
    local ready=0
    for _ in $(seq 1 200); do
        kill -0 "$PID" 2> /dev/null || break
        if [ "$(redis-cli -p "$port" ping 2> /dev/null)" = PONG ]; then ready=1; break; fi
        sleep 0.05
    done
    [ "$ready" = 1 ] || { echo "ab_server: $server did not start" >&2; exit 1; }
    local before after ops hz
    hz=$(getconf CLK_TCK)
    before=$(cpu_ticks "$PID")
    ops=$(timeout 300 redis-benchmark -p "$port" -c "$CLIENTS" -r 1000000 -d 100 -t set \
          -n "$REQUESTS" -P "$PIPELINE" -q 2>&1 | tr '\r' '\n' | awk '/requests per second/ {print $2}' | tail -1)
    after=$(cpu_ticks "$PID")
    kill "$PID"
    wait "$PID" 2> /dev/null || true
    PID=""
    [ -n "$ops" ] || { echo "ab_server: redis-benchmark gave no figure for $server" >&2; exit 1; }
    local cpu
    cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$REQUESTS" 'BEGIN {printf "%.3f", t * 1e6 / hz / n}')
    echo "$ops $cpu" >> "$WORK/$label"
    echo "# round $round $label ($server): $ops ops/s, server CPU $cpu us per request"
}

echo "# ab_server: mode $MODE, -P $PIPELINE, -c $CLIENTS, $REQUESTS SETs of 100 bytes, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then measure A "$A"; measure B "$B"; else measure B "$B"; measure A "$A"; fi
done

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
wins=$(paste -d' ' "$WORK/A" "$WORK/B" | awk '$3 > $1 {b++} $1 > $3 {a++} END {printf "%d %d", a, b}')
read -r a_wins b_wins <<< "$wins"
for label in A B; do
    server=$A; won=$a_wins
    [ "$label" = B ] && { server=$B; won=$b_wins; }
    echo "AB $label ops_median=$(cut -d' ' -f1 "$WORK/$label" | median) cpu_us_median=$(cut -d' ' -f2 "$WORK/$label" | median) rounds_won=$won/$ROUNDS server=$server"
done
