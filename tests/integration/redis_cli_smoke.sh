#!/usr/bin/env bash
# redis-cli smoke test: the real redis-cli against shoal-server, inline and pipe modes,
# then a short redis-benchmark run (bounded by -n). Stops the server by PID; exit 0 only
# if every check passed and the server exited 0 on SIGTERM.
set -euo pipefail
binary="$1"
log=$(mktemp)
# A picked port is only free when picked; a parallel test may take it first. The server
# then refuses to start (it never shares a port), and the start is retried on a new port.
pid=
for _ in 1 2 3 4 5; do
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$binary" --port "$port" --bind 127.0.0.1 >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  kill -0 "$pid" 2>/dev/null && break
  wait "$pid" || true
  grep -q "Address already in use" "$log" || { echo "FAIL: server did not start"; cat "$log"; exit 1; }
done
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
kill -0 "$pid" 2>/dev/null || { echo "FAIL: no free port"; cat "$log"; exit 1; }
cli() { redis-cli -p "$port" "$@"; }
check() { if [ "$1" != "$2" ]; then echo "FAIL: expected '$2', got '$1'"; cat "$log"; exit 1; fi; }
check "$(cli ping)" "PONG"
check "$(cli set greeting hello)" "OK"
check "$(cli get greeting)" "hello"
check "$(cli incr n)" "1"
check "$(cli exists greeting n nope)" "2"
check "$(cli --no-raw get nope)" "(nil)"
check "$(cli dbsize)" "2"
check "$(printf 'SET piped 1\nINCR piped\nGET piped\n' | cli)" "$(printf 'OK\n2\n2')"
check "$(printf '*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\ny\r\n' | cli --pipe | tail -1)" "errors: 0, replies: 1"
check "$(cli foo 2>&1)" "ERR unknown command 'foo', with args beginning with: "
redis-benchmark -p "$port" -q -n 2000 -c 10 -t set,get,incr >/dev/null
check "$(cli get greeting)" "hello"
kill -TERM $pid
wait $pid
status=$?
trap - EXIT
check "$status" "0"
echo "1 passed, 0 failed"
