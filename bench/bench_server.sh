#!/bin/bash
# bench_server.sh -- shoal-server against Debian's redis-server, measured by redis-benchmark
# in one run (make bench-server; docs/BENCHMARKS.md, section "Server").
#
# Both servers are started here on loopback ports picked here, and the two are measured
# alternately, round after round (the first server of a round alternates too), so a noisy
# neighbour on the machine hurts both alike. Each figure is the median of RUNS rounds.
#
#   (a) persistence off: shoal-server in memory mode against redis-server with save ""
#       and appendonly no; SET and GET with -P 1 and -P 16: throughput and p99 latency.
#   (b) every write synced: shoal-server --sync always against redis-server appendonly
#       yes appendfsync always; SET with -P 1 and -P 16.
#   (c) memory: resident set size after 1,000,000 SETs of distinct keys with 100-byte
#       values (loaded with redis-cli --pipe), persistence off.
#
# Output: lines "BENCH <name> shoal=<v> redis=<v> ratio=<r> unit=<u>"; ratio > 1 means Shoal
# is better (shoal/redis for ops/s, redis/shoal for ms and MB). Everything else starts
# with '#'. Usage: bench_server.sh [path/to/shoal-server]; environment: RUNS (default 3),
# QUICK=1 (one round, small counts: a smoke test), THREADS (shoal-server's event loops,
# default: the server's, half the cores), PARTS (which of memory,durable,rss to run; default all three).
set -euo pipefail

SHOAL=${1:-build/shoal-server}
RUNS=${RUNS:-3}
CLIENTS=50
if [ "${QUICK:-0}" = 1 ]; then
    RUNS=1 N_P1=20000 N_P16=100000 N_SYNC_P1=10000 N_SYNC_P16=50000 KEYS=100000
else
    N_P1=${N_P1:-200000} N_P16=${N_P16:-1000000} N_SYNC_P1=${N_SYNC_P1:-100000}
    N_SYNC_P16=${N_SYNC_P16:-500000} KEYS=${KEYS:-1000000}
fi
THREADS=${THREADS:-0}
PARTS=${PARTS:-memory,durable,rss}
part() { [[ ",$PARTS," == *",$1,"* ]]; }

for tool in redis-server redis-benchmark redis-cli python3; do
    command -v "$tool" > /dev/null || { echo "bench_server: $tool is missing (scripts/deps.sh)" >&2; exit 1; }
done
[ -x "$SHOAL" ] || { echo "bench_server: $SHOAL is not built (make build)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-server.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2> /dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PORT PID: bounded wait until the server answers PING.
wait_ready() {
    for _ in $(seq 1 200); do
        kill -0 "$2" 2> /dev/null || { echo "bench_server: server on port $1 exited" >&2; return 1; }
        [ "$(redis-cli -p "$1" ping 2> /dev/null)" = PONG ] && return 0
        sleep 0.05
    done
    echo "bench_server: server on port $1 did not start" >&2
    return 1
}

# start_shoal PORT ARGS... / start_redis PORT ARGS...: sets STARTED to the PID.
start_shoal() {
    local port=$1
    shift
    "$SHOAL" --bind 127.0.0.1 --port "$port" --threads "$THREADS" --loglevel warning "$@" \
        > "$WORK/shoal-$port.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_ready "$port" "$STARTED"
}
start_redis() {
    local port=$1
    shift
    redis-server --bind 127.0.0.1 --port "$port" --daemonize no --loglevel warning "$@" \
        > "$WORK/redis-$port.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_ready "$port" "$STARTED"
}
stop() {
    kill -TERM "$1" 2> /dev/null || true
    wait "$1" 2> /dev/null || true
}

# measure PORT TEST PIPELINE REQUESTS: prints "<ops/s> <p99 ms>".
measure() {
    redis-benchmark -h 127.0.0.1 -p "$1" -t "$2" -P "$3" -n "$4" -c "$CLIENTS" -r 1000000 \
        -d 100 --precision 3 --csv 2> /dev/null |
        awk -F'"' 'NR > 1 && $2 != "" { printf "%s %s\n", $4, $14 }'
}

median() {
    tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# report NAME SHOAL_VALUES REDIS_VALUES UNIT HIGHER_IS_BETTER
report() {
    local shoal redis
    shoal=$(echo "$2" | median)
    redis=$(echo "$3" | median)
    awk -v n="$1" -v s="$shoal" -v r="$redis" -v u="$4" -v h="$5" 'BEGIN {
        ratio = h ? (r > 0 ? s / r : 0) : (s > 0 ? r / s : 0)
        printf "BENCH %s shoal=%s redis=%s ratio=%.2f unit=%s\n", n, s, r, ratio, u }'
}

# run_cases PREFIX SHOAL_PORT REDIS_PORT CASES...: each case is TEST:PIPELINE:REQUESTS.
# Prints the BENCH lines of throughput and p99 for every case.
run_cases() {
    local prefix=$1 shoal_port=$2 redis_port=$3
    shift 3
    declare -A shoal_rps shoal_p99 redis_rps redis_p99
    for round in $(seq 1 "$RUNS"); do
        for spec in "$@"; do
            IFS=: read -r test pipeline requests <<< "$spec"
            local order="shoal redis"
            [ $((round % 2)) = 0 ] && order="redis shoal"
            for who in $order; do
                local port=$shoal_port
                [ "$who" = redis ] && port=$redis_port
                read -r rps p99 <<< "$(measure "$port" "$test" "$pipeline" "$requests")"
                echo "# round $round $prefix $test -P $pipeline $who: $rps ops/s p99 $p99 ms" >&2
                if [ "$who" = shoal ]; then
                    shoal_rps[$spec]+=" $rps"
                    shoal_p99[$spec]+=" $p99"
                else
                    redis_rps[$spec]+=" $rps"
                    redis_p99[$spec]+=" $p99"
                fi
            done
        done
    done
    for spec in "$@"; do
        IFS=: read -r test pipeline requests <<< "$spec"
        local name="${prefix}_${test}_p${pipeline}"
        report "$name" "${shoal_rps[$spec]}" "${redis_rps[$spec]}" ops/s 1
        report "${name}_p99" "${shoal_p99[$spec]}" "${redis_p99[$spec]}" ms 0
    done
}

# load_keys PORT: 1,000,000 (KEYS) SETs of distinct keys with 100-byte values.
load_keys() {
    awk -v n="$KEYS" 'BEGIN {
        pad = sprintf("%093d", 0)
        for (i = 0; i < n; i++) {
            key = sprintf("key:%08d", i)
            value = sprintf("%s%07d", pad, i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n", length(key), key, value
        }
    }' | redis-cli -p "$1" --pipe > /dev/null
}

rss_mb() {
    awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"
}

started=$(date +%s)
echo "# shoal-server vs redis-server $(redis-server --version | awk '{ print $3 }'), redis-benchmark -c $CLIENTS -r 1000000 -d 100, median of $RUNS alternating rounds, $(nproc) cores"

# (a) persistence off
if part memory; then
shoal_port=$(free_port)
start_shoal "$shoal_port"
shoal_pid=$STARTED
redis_port=$(free_port)
start_redis "$redis_port" --save "" --appendonly no
redis_pid=$STARTED
echo "# (a) persistence off: shoal-server memory mode, redis-server save \"\" appendonly no"
run_cases server "$shoal_port" "$redis_port" "set:1:$N_P1" "get:1:$N_P1" "set:16:$N_P16" "get:16:$N_P16"
stop "$shoal_pid"
stop "$redis_pid"
fi

# (b) every write synced before its reply
if part durable; then
mkdir -p "$WORK/shoal-data" "$WORK/redis-data"
shoal_port=$(free_port)
start_shoal "$shoal_port" --dir "$WORK/shoal-data" --sync always
shoal_pid=$STARTED
redis_port=$(free_port)
start_redis "$redis_port" --dir "$WORK/redis-data" --save "" --appendonly yes --appendfsync always
redis_pid=$STARTED
echo "# (b) every write synced: shoal-server --sync always, redis-server appendonly yes appendfsync always (data in $WORK)"
run_cases server_durable "$shoal_port" "$redis_port" "set:1:$N_SYNC_P1" "set:16:$N_SYNC_P16"
stop "$shoal_pid"
stop "$redis_pid"
fi

# (c) memory after KEYS SETs of 100 bytes, persistence off
if part rss; then
shoal_port=$(free_port)
start_shoal "$shoal_port"
shoal_pid=$STARTED
load_keys "$shoal_port"
sleep 2 # both servers idle, holding their keys: RSS without shoal's reserve of growing pages
shoal_rss=$(rss_mb "$shoal_pid")
shoal_keys=$(redis-cli -p "$shoal_port" dbsize)
stop "$shoal_pid"
redis_port=$(free_port)
start_redis "$redis_port" --save "" --appendonly no
redis_pid=$STARTED
load_keys "$redis_port"
sleep 2
redis_rss=$(rss_mb "$redis_pid")
redis_keys=$(redis-cli -p "$redis_port" dbsize)
stop "$redis_pid"
echo "# (c) RSS after $KEYS SETs of distinct keys, 100-byte values: shoal $shoal_keys keys, redis $redis_keys keys"
report server_memory "$shoal_rss" "$redis_rss" MB 0
fi

echo "# targets: server_{set,get}_p{1,16} ratio >= 1.2 with p99 ratio >= 1.0; server_durable_set_* ratio >= 2; server_memory ratio >= 1.0"
echo "# elapsed $(($(date +%s) - started)) s"
