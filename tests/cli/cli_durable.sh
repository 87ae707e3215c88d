#!/usr/bin/env bash
# The `shoal` tool's durable subcommands, end to end on real directories:
#   check  a clean database (exit 0) and that it changes no file; a database in use (exit 2);
#          a log segment with a byte flipped in its middle (exit 1, the segment named); a lost
#          first segment after the checkpoint (exit 1, its successor named); a torn
#          tail (a warning, exit 0); not a database (exit 2);
#   stats  shows the number of keys make_db left;
#   dump/load  dump -> load into a new directory -> dump again gives identical files, through
#          --out/--in and through a pipe; loading again is idempotent; malformed files
#          (truncated, a flipped byte, keys out of order, a wrong end count) and a namespace
#          owned by another tenant are refused with exit 1 and change nothing.
# Usage: cli_durable.sh SHOAL MAKE_DB
set -euo pipefail
shoal="$1"
make_db="$2"
python=/usr/bin/python3
work=$(mktemp -d /tmp/shoal-cli-XXXXXX)
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*"; exit 1; }
# Runs a command, stores its output in $out and its exit status in $status.
run() { set +e; out=$("$@" 2>&1); status=$?; set -e; }
expect_status() { [ "$status" -eq "$1" ] || { echo "$out"; fail "$2: exit $status, expected $1"; }; }
expect_output() { grep -qF -- "$1" <<<"$out" || { echo "$out"; fail "$2: no '$1' in the output"; }; }
fingerprint() { (cd "$1" && find . -type f ! -name LOCK -print0 | sort -z | xargs -0 sha256sum); }

# A database whose last writes live in the log only, and untouched copies of it.
keys=$("$make_db" "$work/db" | sed -n 's/^keys //p')
[ -n "$keys" ] || fail "make_db printed no key count"
cp -a "$work/db" "$work/damaged"
cp -a "$work/db" "$work/torn"
[ "$(ls "$work/db/log/0" | wc -l)" -ge 2 ] || fail "make_db left fewer than 2 segments in stream 0"

# check: a clean database, and no file changed by it.
before=$(fingerprint "$work/db")
run "$shoal" check "$work/db"
expect_status 0 "check of a clean database"
expect_output "MANIFEST: OK" "check of a clean database"
expect_output ".ckpt: OK" "check of a clean database"
expect_output ".wal: OK" "check of a clean database"
[ "$before" = "$(fingerprint "$work/db")" ] || fail "check changed a file"

# check refuses a database in use, and a directory that holds none.
run flock -x "$work/db/LOCK" "$shoal" check "$work/db"
expect_status 2 "check of a database in use"
expect_output "in use" "check of a database in use"
mkdir "$work/nothing"
run "$shoal" check "$work/nothing"
expect_status 2 "check of an empty directory"
[ ! -e "$work/nothing/LOCK" ] || fail "check created a file in a directory without a database"
run "$shoal" check "$work/missing"
expect_status 2 "check of a missing directory"
run "$shoal" check
expect_status 2 "check without a directory"

# check: a byte flipped in the middle of a log segment that records follow.
segment=$(ls "$work/damaged/log/0"/*.wal | head -n 1)
"$python" - "$segment" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
end = len(data.rstrip(b"\0"))
data[end // 2] ^= 0x5A
open(path, "wb").write(data)
EOF
run "$shoal" check "$work/damaged"
expect_status 1 "check of a flipped byte"
expect_output "$segment: DAMAGED at offset" "check of a flipped byte"

# check: the first log segment of a stream lost after the checkpoint (its successor names it
# and says it held records the checkpoint does not cover).
cp -a "$work/db" "$work/lost"
first=$(ls "$work/lost/log/0/"*.wal | head -1)
second=$(ls "$work/lost/log/0/"*.wal | sed -n 2p)
[ -n "$second" ] || fail "make_db left fewer than 2 segments in stream 0"
rm "$first"
run "$shoal" check "$work/lost"
expect_status 1 "check of a lost first segment"
expect_output "$second: DAMAGED at offset 0: the segment before it" "check of a lost first segment"

# check: a byte flipped in a checkpoint file, a missing one, and a stray checkpoint.
cp -a "$work/db" "$work/ckpt"
current=$(ls -d "$work/ckpt/ckpt"/* | tail -n 1)
files=($(ls "$current"/*.ckpt))
[ "${#files[@]}" -ge 2 ] || fail "make_db left fewer than 2 checkpoint files"
"$python" - "${files[0]}" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0x01
open(path, "wb").write(data)
EOF
rm "${files[1]}"
mkdir "$work/ckpt/ckpt/00000000000000000001"
run "$shoal" check "$work/ckpt"
expect_status 1 "check of damaged checkpoint files"
expect_output "${files[0]}: DAMAGED at offset" "check of a flipped checkpoint byte"
expect_output "${files[1]}: DAMAGED at offset 0: missing" "check of a missing checkpoint file"
expect_output "00000000000000000001: WARNING: stray" "check of a stray checkpoint"

# check: garbage after the last record of a stream's last segment is a torn tail.
last=$(ls "$work/torn/log/1"/*.wal | tail -n 1)
"$python" - "$last" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
end = len(data.rstrip(b"\0"))
data[end:end + 7] = b"\x13\x37\x13\x37\x13\x37\x13"
open(path, "wb").write(data)
EOF
run "$shoal" check "$work/torn"
expect_status 0 "check of a torn tail"
expect_output "$last: WARNING: torn tail" "check of a torn tail"

# stats shows the keys.
run "$shoal" stats "$work/db"
expect_status 0 "stats"
expect_output "keys $keys," "stats"
expect_output "alpha" "stats"
expect_output "users" "stats"
run "$shoal" stats "$work/nothing"
expect_status 2 "stats of a directory without a database"
[ ! -e "$work/nothing/MANIFEST" ] || fail "stats created a database"

# dump -> load -> dump: identical, through files and through a pipe.
run "$shoal" dump "$work/db" --out "$work/one.dump"
expect_status 0 "dump"
run "$shoal" load "$work/copy" --in "$work/one.dump"
expect_status 0 "load"
run "$shoal" dump "$work/copy" --out "$work/two.dump"
expect_status 0 "second dump"
cmp "$work/one.dump" "$work/two.dump" || fail "dump, load, dump: the dumps differ"
"$shoal" dump "$work/db" | "$shoal" load "$work/piped" --shards 2
"$shoal" dump "$work/piped" >"$work/three.dump"
cmp "$work/one.dump" "$work/three.dump" || fail "dump | load, dump: the dumps differ"
run "$shoal" stats "$work/copy"
expect_output "keys $keys," "stats of the loaded copy"
run "$shoal" check "$work/copy"
expect_status 0 "check of the loaded copy"

# Loading the same file again changes nothing.
run "$shoal" load "$work/copy" --in "$work/one.dump"
expect_status 0 "a second load of the same file"
"$shoal" dump "$work/copy" --out "$work/four.dump"
cmp "$work/one.dump" "$work/four.dump" || fail "a second load changed the contents"

# Malformed files are refused with exit 1, and nothing is created or changed.
size=$(stat -c %s "$work/one.dump")
head -c $((size - 10)) "$work/one.dump" >"$work/cut.dump"
run "$shoal" load "$work/bad" --in "$work/cut.dump"
expect_status 1 "load of a truncated file"
expect_output "nothing was loaded" "load of a truncated file"
[ ! -e "$work/bad" ] || fail "a refused load created the directory"
cp "$work/one.dump" "$work/flipped.dump"
"$python" - "$work/flipped.dump" <<'EOF'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0x01
open(path, "wb").write(data)
EOF
run "$shoal" load "$work/copy" --in "$work/flipped.dump"
expect_status 1 "load of a file with a flipped byte"
expect_output "checksum mismatch" "load of a file with a flipped byte"

# Hand-made files: CRC-32C and the record framing of docs/FORMAT.md ("Dump format").
"$python" - "$work" <<'EOF'
import struct, sys
work = sys.argv[1]
table = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
def mask(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
def record(kind, payload):
    head = struct.pack("<BI", kind, len(payload))
    return head + payload + struct.pack("<I", mask(crc32c(head + payload)))
def name(text):
    return struct.pack("<H", len(text)) + text
unlimited = 2**64 - 1
tenant = record(1, name(b"default") + struct.pack("<QQQ", unlimited, unlimited, unlimited))
def namespace(text):
    return record(2, struct.pack("<IBB", 0, 1, 1) + name(text))
def entry(ns, key, value):
    return record(3, struct.pack("<II", ns, len(key)) + key + value)
def end(t, n, e):
    return record(4, struct.pack("<QQQ", t, n, e))
header = b"SHOALDMP" + struct.pack("<II", 1, 0)
files = {
    "good.dump": header + tenant + namespace(b"n") + entry(0, b"a", b"1") + entry(0, b"b", b"") + end(1, 1, 2),
    "order.dump": header + tenant + namespace(b"n") + entry(0, b"b", b"1") + entry(0, b"a", b"2") + end(1, 1, 2),
    "count.dump": header + tenant + namespace(b"n") + entry(0, b"a", b"1") + end(1, 1, 5),
    "users.dump": header + tenant + namespace(b"users") + entry(0, b"a", b"1") + end(1, 1, 1),
}
for file, data in files.items():
    open(f"{work}/{file}", "wb").write(data)
EOF
run "$shoal" load "$work/hand" --in "$work/good.dump"
expect_status 0 "load of a hand-made file"
run "$shoal" stats "$work/hand"
expect_output "keys 2," "stats of the hand-made file's database"
run "$shoal" load "$work/bad" --in "$work/order.dump"
expect_status 1 "load of keys out of order"
expect_output "ascending" "load of keys out of order"
run "$shoal" load "$work/bad" --in "$work/count.dump"
expect_status 1 "load of a wrong end count"
expect_output "end record" "load of a wrong end count"
[ ! -e "$work/bad" ] || fail "a refused load created the directory"
run "$shoal" load "$work/copy" --in "$work/users.dump"
expect_status 1 "load of a namespace owned by another tenant"
expect_output "another tenant" "load of a namespace owned by another tenant"
"$shoal" dump "$work/copy" --out "$work/five.dump"
cmp "$work/one.dump" "$work/five.dump" || fail "a refused load changed the database"

echo "cli_durable: all checks passed"
