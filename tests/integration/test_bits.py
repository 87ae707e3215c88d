"""The bitmap commands against Redis itself (src/server/cmd_bits.c).

SETBIT, GETBIT, BITCOUNT, BITPOS and BITOP, with ranges in bytes and bits, negative
indexes, missing keys, empty and all-ones strings, offsets past the end and bad arguments,
are sent in one random sequence (fixed seed, bounded count) to shoal-server and to
Debian's redis-server side by side; every reply, errors included, must be the same, and
so must every key's value at the end.
"""
import random
import sys

import redis

import harness

KEYS = ["a", "b", "c", "empty", "ones", "missing"]
COMMANDS = 4000


def arguments(rng):
    """One random bitmap command (as a list of arguments)."""
    key = rng.choice(KEYS)

    def index():
        return str(rng.choice([rng.randint(-40, 40), rng.randint(-3, 3), rng.randint(0, 300)]))

    def unit():
        return [rng.choice(["BYTE", "BIT", "byte", "bit", "BITS"])] if rng.random() < 0.5 else []

    kind = rng.random()
    if kind < 0.25:
        offset = rng.choice([rng.randint(0, 200), rng.randint(0, 1 << 16), -1, "x", 1 << 32])
        return ["SETBIT", key, str(offset), rng.choice(["0", "1", "1", "2"])]
    if kind < 0.40:
        return ["GETBIT", key, str(rng.choice([rng.randint(0, 300), -1, "y"]))]
    if kind < 0.60:
        shape = rng.randint(0, 3)
        if shape == 0:
            return ["BITCOUNT", key]
        if shape == 1:
            return ["BITCOUNT", key, index()]
        return ["BITCOUNT", key, index(), index()] + unit()
    if kind < 0.80:
        bit = rng.choice(["0", "1", "1", "0", "2"])
        shape = rng.randint(0, 3)
        extra = [[], [index()], [index(), index()], [index(), index()] + unit()][shape]
        return ["BITPOS", key, bit] + extra
    if kind < 0.92:
        operation = rng.choice(["AND", "OR", "XOR", "NOT", "and", "nand"])
        sources = rng.sample(KEYS, rng.randint(1, 3))
        return ["BITOP", operation, rng.choice(KEYS)] + sources
    if kind < 0.96:
        value = bytes(rng.choice([0, 255, rng.randint(0, 255)]) for _ in range(rng.randint(0, 12)))
        return ["SET", key, value]
    return ["DEL", key]


def reply(client, args):
    try:
        return client.execute_command(*args)
    except redis.ResponseError as error:
        return "error: %s" % error


def test_same_replies_as_redis(binary):
    seed = 20261207
    rng = random.Random(seed)
    with harness.beside_redis(binary) as (ours, theirs):
        for client in (ours, theirs):
            client.set("empty", b"")
            client.set("ones", b"\xff" * 5)
        for step in range(COMMANDS):
            args = arguments(rng)
            got, expected = reply(ours, args), reply(theirs, args)
            assert got == expected, "seed %d, command %d %r: shoal %r, redis %r" % (
                seed, step, args, got, expected)
        for key in KEYS:
            assert ours.get(key) == theirs.get(key), key


def test_bits_in_transactions_keep_expiry(binary):
    shoal = harness.Server(binary, env={"SHOAL_MODE": "memory"})
    try:
        r = redis.Redis(host="127.0.0.1", port=shoal.port, socket_timeout=60)
        r.set("k", b"\x00", ex=1000)
        assert r.setbit("k", 3, 1) == 0 and r.get("k") == b"\x10" and r.ttl("k") > 0
        pipe = r.pipeline(transaction=True)
        pipe.setbit("k", 0, 1).getbit("k", 0).bitcount("k").bitop("NOT", "n", "k").get("n")
        assert pipe.execute() == [0, 1, 2, 1, b"\x6f"]
        assert r.ttl("n") == -1  # BITOP's destination starts without an expiry
        # A far offset grows the string (to 32 MiB here), zero-filled; offsets past
        # 2^32 - 1 are refused as in Redis, and so are the last 80 bits below it, which
        # would pass the largest value with its header (docs/PROTOCOL.md).
        far = 1 << 28
        assert r.setbit("big", far, 1) == 0
        assert r.strlen("big") == (far >> 3) + 1 and r.bitcount("big") == 1
        assert r.bitpos("big", 1) == far and r.getbit("big", far) == 1
        for offset, text in (((4 << 30) - 1, "maximum allowed size"), (4 << 30, "out of range")):
            try:
                r.setbit("big", offset, 1)
                raise AssertionError("offset %d must be refused" % offset)
            except redis.ResponseError as error:
                assert text in str(error), error
        assert r.bitcount("big") == 1  # nothing changed
        r.delete("big")
    finally:
        shoal.stop()


if __name__ == "__main__":
    harness.run([test_same_replies_as_redis, test_bits_in_transactions_keep_expiry])
