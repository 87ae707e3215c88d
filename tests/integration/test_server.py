"""The python3-redis suite: shoal-server must behave as Redis 7 for a real client.

Covers pipelines, MULTI/EXEC, WATCH conflicts, concurrent read-modify-write, SCAN
completeness under concurrent writes, binary-safe keys and values, a 100 MiB value, TTL
expiry (lazy and active), Redis's exact error texts, RESP3 through HELLO 3, and INFO.
Every loop is bounded; nothing asserts on time.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import redis  # noqa: E402


def connect(server, **kwargs):
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=60, **kwargs)


def with_server(test):
    def wrapper(binary):
        server = harness.Server(binary, ["--threads", "2", "--hz", "50"])
        try:
            test(server)
            assert server.alive(), "server died"
        finally:
            server.stop()
    wrapper.__name__ = test.__name__
    return wrapper


def expect_error(function, text):
    try:
        function()
    except redis.ResponseError as error:
        assert text in str(error), "expected %r in %r" % (text, str(error))
        return
    raise AssertionError("expected an error containing %r" % text)


@with_server
def test_strings(server):
    r = connect(server)
    assert r.ping()
    assert r.set("a", "1") is True
    assert r.get("a") == b"1"
    assert r.incr("a") == 2 and r.incrby("a", 10) == 12 and r.decr("a") == 11 and r.decrby("a", 2) == 9
    assert r.incrbyfloat("a", 0.5) == 9.5
    assert r.set("a", "x", nx=True) is None
    assert r.set("new", "x", xx=True) is None
    assert r.set("a", "y", xx=True) is True
    assert r.set("a", "z", get=True) == b"y"
    assert r.setnx("a", "q") is False and r.setnx("b", "q") is True
    assert r.getset("b", "r") == b"q"
    assert r.append("b", "st") == 3 and r.get("b") == b"rst"
    assert r.strlen("b") == 3 and r.strlen("missing") == 0
    assert r.getrange("b", 0, -2) == b"rs" and r.getrange("b", -1, -1) == b"t"
    assert r.setrange("c", 3, "x") == 4 and r.get("c") == b"\0\0\0x"
    assert r.mset({"m1": "1", "m2": "2"}) is True
    assert r.mget("m1", "m2", "m3") == [b"1", b"2", None]
    assert r.msetnx({"m1": "x", "m4": "4"}) is False and r.get("m4") is None
    assert r.msetnx({"m4": "4", "m5": "5"}) is True
    assert r.getdel("m4") == b"4" and r.exists("m4") == 0
    assert r.exists("m1", "m2", "m1", "nope") == 3
    assert r.type("m1") == b"string" and r.type("nope") == b"none"
    assert r.delete("m1", "m2", "nope") == 2
    r.set("n", "abc")
    expect_error(lambda: r.incr("n"), "value is not an integer or out of range")
    expect_error(lambda: r.incrbyfloat("n", 1), "value is not a valid float")
    r.set("big", str(2**63 - 1))
    expect_error(lambda: r.incr("big"), "increment or decrement would overflow")
    expect_error(lambda: r.execute_command("GET"), "wrong number of arguments for 'get' command")
    expect_error(lambda: r.execute_command("NOSUCH", "x"), "unknown command 'NOSUCH'")
    expect_error(lambda: r.execute_command("SET", "k", "v", "EX", "0"), "invalid expire time in 'set' command")
    expect_error(lambda: r.execute_command("SET", "k", "v", "NX", "XX"), "syntax error")
    expect_error(lambda: r.execute_command("SELECT", "99"), "DB index is out of range")
    assert r.rename("b", "b2") is True and r.get("b2") == b"rst"
    expect_error(lambda: r.rename("nope", "x"), "no such key")
    assert r.renamenx("b2", "c") is False and r.renamenx("b2", "d") is True


@with_server
def test_pipeline_and_transactions(server):
    r = connect(server)
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set("p%d" % i, i)
    for i in range(1000):
        pipe.get("p%d" % i)
    results = pipe.execute()
    assert results[:1000] == [True] * 1000
    assert results[1000:] == [str(i).encode() for i in range(1000)]
    pipe = r.pipeline(transaction=True)
    pipe.set("t1", "a").incr("t2").get("t1").get("t2")
    assert pipe.execute() == [True, 1, b"a", b"1"]
    # A transaction reads its own writes, and a failing command does not stop the others.
    pipe = r.pipeline(transaction=True)
    pipe.set("t3", "x").incr("t3").get("t3")
    results = pipe.execute(raise_on_error=False)
    assert results[0] is True and isinstance(results[1], redis.ResponseError) and results[2] == b"x"
    # A queue-time error aborts EXEC as in Redis.
    raw = connect(server)
    raw.execute_command("MULTI")
    expect_error(lambda: raw.execute_command("GET"), "wrong number of arguments")
    expect_error(lambda: raw.execute_command("EXEC"), "Transaction discarded")
    expect_error(lambda: raw.execute_command("EXEC"), "EXEC without MULTI")
    expect_error(lambda: raw.execute_command("DISCARD"), "DISCARD without MULTI")


@with_server
def test_exec_lists_its_own_writes(server):
    """Inside EXEC, DBSIZE, KEYS, SCAN and RANDOMKEY see the writes queued before them."""
    r = connect(server, db=3)
    r.mset({"a": 1, "c": 3, "e": 5})
    pipe = r.pipeline(transaction=True)
    pipe.set("b", 2).delete("c").set("a", "new").dbsize().keys("*").scan(0, count=1000)
    pipe.set("c", 33).delete("b").set("b", 22).delete("b").dbsize().keys("*")
    pipe.scan(0, match="[ab]*", count=1000)
    results = pipe.execute()
    assert results[3] == 3, results
    assert results[4] == [b"a", b"b", b"e"], results
    assert results[5] == (0, [b"a", b"b", b"e"]), results
    assert results[10] == 3 and results[11] == [b"a", b"c", b"e"], results
    assert results[12] == (0, [b"a"]), results
    assert r.dbsize() == 3 and sorted(r.keys("*")) == [b"a", b"c", b"e"]
    # A scan in steps inside EXEC sees each written key once, beside the committed ones.
    pipe = r.pipeline(transaction=True)
    pipe.set("d", 4).set("f", 6).scan(0, count=2)
    cursor, keys = pipe.execute()[2]
    assert keys == [b"a", b"c"] and cursor != 0, (cursor, keys)
    seen = list(keys)
    for _ in range(10):
        cursor, keys = r.scan(cursor, count=2)
        seen += keys
        if cursor == 0:
            break
    assert seen == [b"a", b"c", b"d", b"e", b"f"], seen
    # RANDOMKEY never names a key the transaction deleted, and finds one it wrote.
    pipe = r.pipeline(transaction=True)
    for key in ("a", "c", "d", "e", "f"):
        pipe.delete(key)
    pipe.randomkey().dbsize().set("z", 1).randomkey().dbsize()
    assert pipe.execute()[5:] == [None, 0, True, b"z", 1]
    assert r.keys("*") == [b"z"]


def expect_watch_abort(pipe):
    try:
        pipe.execute()
        raise AssertionError("EXEC should have been aborted")
    except redis.WatchError:
        pass


@with_server
def test_flush_inside_exec(server):
    """FLUSHDB and FLUSHALL inside MULTI are writes of the transaction, as in Redis."""
    r = connect(server, db=6)
    other_db = connect(server, db=7)
    r.mset({"a": 1, "b": 2, "c": 3})
    other_db.set("x", "kept")
    pipe = r.pipeline(transaction=True)
    pipe.set("d", 4).get("a").flushdb().get("a").get("d").exists("b").dbsize().keys("*")
    pipe.set("e", 5).dbsize().keys("*").scan(0, count=1000).randomkey()
    assert pipe.execute() == [True, b"1", True, None, None, 0, 0, [], True, 1, [b"e"],
                              (0, [b"e"]), b"e"]
    assert r.keys("*") == [b"e"] and r.dbsize() == 1
    assert other_db.get("x") == b"kept"
    # FLUSHALL reaches every database of the user, in the transaction's order.
    pipe = r.pipeline(transaction=True)
    pipe.set("n", 1).flushall().dbsize().set("m", 2)
    assert pipe.execute() == [True, True, 0, True]
    assert r.keys("*") == [b"m"] and other_db.dbsize() == 0
    # A flush inside EXEC touches every key it deletes: it breaks another client's WATCH.
    r.set("watched", "1")
    with r.pipeline() as watcher:
        watcher.watch("watched")
        flusher = r.pipeline(transaction=True)
        flusher.flushdb()
        assert flusher.execute() == [True]
        watcher.multi()
        watcher.set("watched", "mine")
        expect_watch_abort(watcher)
    assert r.dbsize() == 0
    # A transaction that only flushes an empty database answers OK and changes nothing.
    pipe = r.pipeline(transaction=True)
    pipe.flushdb().flushdb()
    assert pipe.execute() == [True, True] and r.dbsize() == 0


@with_server
def test_copy_and_move(server):
    """COPY and MOVE with Redis's replies, keeping the value's expiry."""
    r = connect(server, db=8)
    r.set("src", "value", ex=1000)
    assert r.copy("src", "dst") is True and r.get("dst") == b"value"
    assert 990 <= r.ttl("dst") <= 1000
    r.set("taken", "old")
    assert r.copy("src", "taken") is False and r.get("taken") == b"old"
    assert r.copy("src", "taken", replace=True) is True and r.get("taken") == b"value"
    assert r.copy("absent", "x") is False and r.exists("x") == 0
    # Into another database, one never used before (its namespace is created first).
    assert r.copy("src", "src", destination_db=12) is True
    other = connect(server, db=12)
    assert other.get("src") == b"value" and other.ttl("src") > 0
    for args, text in ((("src", "src"), "same"), (("src", "x", "DB", "99"), "out of range"),
                       (("src", "x", "DB", "no"), "not an integer"),
                       (("src", "x", "NOPE"), "syntax")):
        try:
            r.execute_command("COPY", *args)
            raise AssertionError("COPY %r should fail" % (args,))
        except redis.ResponseError as error:
            assert text in str(error), error
    # MOVE: only when the key exists here and not there.
    assert r.move("src", 12) is False and r.exists("src") == 1
    r.set("plain", "p")
    assert r.move("plain", 13) is True and r.exists("plain") == 0
    assert connect(server, db=13).get("plain") == b"p"
    assert r.move("absent", 13) is False
    try:
        r.move("dst", 8)
        raise AssertionError("MOVE to its own database should fail")
    except redis.ResponseError as error:
        assert "same" in str(error)
    # Inside a transaction, in order with the other commands.
    pipe = r.pipeline(transaction=True)
    pipe.set("t", "1").move("t", 14).exists("t").copy("dst", "t")
    assert pipe.execute() == [True, True, 0, True]
    assert r.get("t") == b"value" and connect(server, db=14).get("t") == b"1"


@with_server
def test_memory_and_object(server):
    """MEMORY USAGE and OBJECT, enough for redis-cli --memkeys and clients that ask."""
    r = connect(server, db=9)
    r.set("small", "v")
    r.set("large", "x" * 5000)
    r.set("number", "12345")
    r.set("padded", "012")
    small, large = r.memory_usage("small"), r.memory_usage("large")
    assert 2 < small < 300 and 5000 < large < 6000, (small, large)
    assert r.memory_usage("missing") is None
    assert r.execute_command("MEMORY", "USAGE", "small", "SAMPLES", "0") == small
    encodings = [r.object("encoding", key) for key in ("number", "padded", "small", "large")]
    assert encodings == [b"int", b"embstr", b"embstr", b"raw"], encodings
    assert r.object("refcount", "small") == 1 and r.object("encoding", "missing") is None
    for command, text in ((("OBJECT", "FREQ", "small"), "LFU"),
                          (("OBJECT", "IDLETIME", "small"), "not tracked"),
                          (("MEMORY", "DOCTOR"), "unknown subcommand"),
                          (("MEMORY", "USAGE", "small", "SAMPLES", "x"), "not an integer")):
        try:
            r.execute_command(*command)
            raise AssertionError("%r should fail" % (command,))
        except redis.ResponseError as error:
            assert text in str(error), error
    # Inside EXEC a key written by the transaction counts too.
    pipe = r.pipeline(transaction=True)
    pipe.set("fresh", "y" * 100).memory_usage("fresh")
    assert pipe.execute()[1] >= 100


@with_server
def test_watch_conflict(server):
    r = connect(server)
    other = connect(server)
    r.set("w", "1")
    with r.pipeline() as pipe:
        pipe.watch("w")
        other.set("w", "changed")
        pipe.multi()
        pipe.set("w", "mine")
        expect_watch_abort(pipe)
    assert r.get("w") == b"changed"
    with r.pipeline() as pipe:
        pipe.watch("w")
        pipe.multi()
        pipe.set("w", "mine")
        assert pipe.execute() == [True]
    assert r.get("w") == b"mine"


@with_server
def test_concurrent_increments(server):
    """INCR and WATCH-based increments from many connections lose nothing."""
    threads, rounds = 8, 300

    def incr_worker():
        c = connect(server)
        for _ in range(rounds):
            c.incr("counter")

    def watch_worker():
        c = connect(server)
        done = 0
        attempts = 0
        while done < rounds // 3 and attempts < 100000:
            attempts += 1
            with c.pipeline() as pipe:
                try:
                    pipe.watch("optimistic")
                    value = int(pipe.get("optimistic") or 0)
                    pipe.multi()
                    pipe.set("optimistic", value + 1)
                    pipe.execute()
                    done += 1
                except redis.WatchError:
                    continue
        assert done == rounds // 3

    workers = [threading.Thread(target=incr_worker) for _ in range(threads)]
    workers += [threading.Thread(target=watch_worker) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    r = connect(server)
    assert int(r.get("counter")) == threads * rounds
    assert int(r.get("optimistic")) == 4 * (rounds // 3)


@with_server
def test_scan_complete_under_writes(server):
    r = connect(server)
    stable = set("stable:%05d" % i for i in range(3000))
    pipe = r.pipeline(transaction=False)
    for key in stable:
        pipe.set(key, "v")
    pipe.execute()
    stop = threading.Event()

    def writer():
        c = connect(server)
        i = 0
        while not stop.is_set() and i < 200000:
            c.set("churn:%d" % (i % 500), i)
            if i % 3 == 0:
                c.delete("churn:%d" % ((i * 7) % 500))
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = []
        cursor = 0
        for _ in range(100000):
            cursor, keys = r.scan(cursor=cursor, count=50)
            seen.extend(keys)
            if cursor == 0:
                break
        assert cursor == 0
    finally:
        stop.set()
        thread.join(60)
    found = set(k.decode() for k in seen if k.startswith(b"stable:"))
    assert found == stable, "missing %d keys" % len(stable - found)
    stable_seen = [k for k in seen if k.startswith(b"stable:")]
    assert len(stable_seen) == len(stable), "a key was returned twice"
    matched = list(r.scan_iter(match="stable:0000*", count=100))
    assert sorted(matched) == sorted(("stable:%05d" % i).encode() for i in range(10))
    assert len(r.keys("stable:*")) == 3000
    assert len(list(r.scan_iter(_type="string", count=1000))) >= 3000
    assert list(r.scan_iter(_type="hash")) == []
    expect_error(lambda: r.scan(cursor=12345), "invalid cursor")


@with_server
def test_binary_safe(server):
    r = connect(server)
    key = b"k\x00ey\r\nwith\xffbytes"
    value = b"\x00\r\n\x00value\r\n*1\r\n$3\r\n"
    assert r.set(key, value)
    assert r.get(key) == value
    assert r.exists(key) == 1
    assert key in r.keys("*")
    assert r.append(key, b"\x00") == len(value) + 1
    r.set(b"", b"empty key")
    assert r.get(b"") == b"empty key"


@with_server
def test_large_value(server):
    r = connect(server)
    size = 100 * 1024 * 1024
    value = os.urandom(1024) * (size // 1024)
    assert r.set("huge", value)
    assert r.strlen("huge") == size
    got = r.get("huge")
    assert got == value
    assert r.getrange("huge", size - 3, -1) == value[-3:]
    assert r.delete("huge") == 1


@with_server
def test_expiry(server):
    r = connect(server)
    r.set("e1", "v", px=100)
    assert 0 < r.pttl("e1") <= 100
    assert r.ttl("nope") == -2
    r.set("e2", "v")
    assert r.ttl("e2") == -1
    assert r.expire("e2", 100) is True and 99 <= r.ttl("e2") <= 100
    assert r.expire("e2", 50, gt=True) is False
    assert r.persist("e2") is True and r.ttl("e2") == -1
    assert r.expiretime("e2") == -1
    r.set("e3", "v", ex=100, keepttl=False)
    assert r.set("e3", "w", keepttl=True) and r.ttl("e3") > 0
    assert r.pexpireat("e3", 1) is True and r.exists("e3") == 0
    r.set("lazy", "v", px=50)
    for i in range(200):
        r.set("active:%d" % i, "v", px=50)
    # Wait, bounded in count not time, for the keys to be gone: lazily for "lazy",
    # actively (background sampling) for the others, which nobody reads.
    import time
    for _ in range(400):
        if r.dbsize() <= 3:
            break
        time.sleep(0.01)
    assert r.get("lazy") is None
    info = r.info("stats")
    assert info["expired_keys"] >= 200
    assert r.dbsize() <= 3, r.dbsize()


def fill_and_wait_for_expiry(r, ttl_ms, expiring, tenths):
    """Sets k:000000..k:019999, key i with a TTL of ttl_ms(i) ms (None: none), then waits at
    most tenths / 10 s for active expiry to remove the expiring ones and count them."""
    import time
    pipe = r.pipeline(transaction=False)
    for i in range(20000):
        pipe.set("k:%06d" % i, "v", px=ttl_ms(i))
    pipe.execute()
    for _ in range(tenths):  # bounded
        if r.dbsize() == 20000 - expiring and r.info("stats")["expired_keys"] == expiring:
            break
        time.sleep(0.1)
    assert r.dbsize() == 20000 - expiring, r.dbsize()
    assert r.info("stats")["expired_keys"] == expiring


def test_active_expiry_finds_sparse_keys(binary):
    """Expired keys spread thinly among keys without a TTL (one in a hundred) are swept in
    a few cycles: a chunk with no TTL key keeps the last verdict instead of ending the
    cycle. Ended there, the sweep went 20 keys a cycle: 100 s for these 20,000."""
    server = harness.Server(binary, ["--hz", "10", "--active-expire-keys", "20"])
    try:
        r = connect(server)
        fill_and_wait_for_expiry(r, lambda i: 300 if i % 100 == 50 else None, 200, 200)
        assert server.alive(), "server died"
    finally:
        server.stop()


def test_active_expiry_sweeps(binary):
    """Expired keys nobody reads are swept faster than the base pace: at 20 keys a cycle
    and 10 cycles a second, the 10,000 expired keys among 20,000 would take 100 s; the
    sweep goes on while its chunks keep finding expired keys. Then INFO keyspace counts
    the keys with a time to live that a full pass found."""
    import time
    server = harness.Server(binary, ["--hz", "10", "--active-expire-keys", "20"])
    try:
        r = connect(server)
        fill_and_wait_for_expiry(r, lambda i: 1500 if i % 2 else None, 10000, 300)
        assert r.get("k:000000") == b"v" and r.get("k:000001") is None

        assert r.flushdb()
        for i in range(30):
            r.set("t:%02d" % i, "v", ex=1000)
        for i in range(10):
            r.set("p:%02d" % i, "v")
        for _ in range(300):  # the pass over 40 keys takes 2 cycles
            keyspace = r.info("keyspace").get("db0", {})
            if keyspace.get("expires") == 30:
                break
            time.sleep(0.1)
        assert keyspace["keys"] == 40 and keyspace["expires"] == 30, keyspace
        assert 990000 <= keyspace["avg_ttl"] <= 1000000, keyspace
        assert server.alive(), "server died"
    finally:
        server.stop()


@with_server
def test_randomkey_steps_over_hidden_keys(server):
    """RANDOMKEY finds the one live key however many hidden ones surround it: here 3000
    keys deleted earlier in the same EXEC (RANDOMKEY examined at most 2000 before)."""
    r = connect(server)
    pipe = r.pipeline(transaction=False)
    for i in range(3000):
        pipe.set("k%04d" % i, "v")
    pipe.set("zzz", "live")
    pipe.execute()
    for _ in range(5):  # RANDOMKEY starts at a random place each time
        pipe = r.pipeline(transaction=True)
        pipe.delete(*["k%04d" % i for i in range(3000)])
        pipe.randomkey()
        results = pipe.execute()
        assert results[-1] == b"zzz", results[-1]
        pipe = r.pipeline(transaction=False)
        for i in range(3000):
            pipe.set("k%04d" % i, "v")
        pipe.execute()
    assert r.delete(*["k%04d" % i for i in range(3000)]) == 3000
    assert r.randomkey() == b"zzz"
    assert r.delete("zzz") == 1 and r.randomkey() is None


@with_server
def test_slowlog(server):
    r = connect(server)
    assert r.config_get("slowlog-log-slower-than") == {"slowlog-log-slower-than": "10000"}
    # Below the threshold (1000 s, so that no machine is that slow), nothing is logged.
    assert r.config_set("slowlog-log-slower-than", 1000000000)
    r.slowlog_reset()
    r.set("fast", "1")
    assert r.slowlog_len() == 0
    assert r.config_set("slowlog-log-slower-than", 0)
    r.set("k", "x" * 200)
    entries = r.slowlog_get(2)
    assert [e["command"] for e in entries] == [b"SET k " + b"x" * 128 + b"... (72 more bytes)",
                                               b"CONFIG (redacted) (redacted) (redacted)"]
    assert entries[0]["id"] > entries[1]["id"] and entries[0]["duration"] >= 0
    raw = r.execute_command("SLOWLOG", "GET", "1")[0]  # id, time, us, args, address, name
    assert raw[3] == [b"SLOWLOG", b"GET", b"2"] and raw[4].startswith(b"127.0.0.1:")
    assert r.config_set("slowlog-max-len", 3)
    for i in range(10):
        r.get("k%d" % i)
    assert r.slowlog_len() == 3
    assert r.config_set("slowlog-log-slower-than", -1)
    r.slowlog_reset()
    r.get("k")
    assert r.slowlog_len() == 0
    assert r.execute_command("ROLE") == [b"master", 0, []]


def monitor_lines(sock, count, deadline_s=10.0):
    """Reads count lines (after +OK) from a MONITOR socket, bounded by a deadline."""
    import socket
    import time
    data = b""
    end = time.time() + deadline_s
    while data.count(b"\r\n") < count + 1 and time.time() < end:
        sock.settimeout(max(0.05, end - time.time()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    lines = data.split(b"\r\n")
    assert lines[0] == b"+OK", lines[:2]
    return lines[1:count + 1]


def test_monitor(binary):
    """MONITOR shows every command run, from connections on every loop, in Redis's format
    (quotes and escapes, AUTH redacted); commands refused before they ran and admin
    commands are not shown; RESET ends it; a monitor that goes away changes nothing; one
    that never reads is closed at the output limit, the server serving on."""
    import re
    import socket
    server = harness.Server(binary)
    try:
        monitor = socket.create_connection(("127.0.0.1", server.port))
        monitor.sendall(b"MONITOR\r\n")
        clients = [connect(server) for _ in range(4)]  # spread over the loops
        assert clients[0].ping()
        for i, r in enumerate(clients):
            r.set("k%d" % i, b'a"b\r\n\x00')
        try:
            clients[0].execute_command("GET")  # wrong arity: refused, not shown
        except redis.ResponseError:
            pass
        clients[1].slowlog_len()  # an admin command: not shown
        try:
            clients[2].execute_command("AUTH", "secret")
        except redis.ResponseError:
            pass
        clients[3].get("k3")
        lines = monitor_lines(monitor, 7)
        shown = [re.sub(rb"^\+\d+\.\d{6} \[0 127\.0\.0\.1:\d+\] ", b"", line)
                 for line in lines]
        assert all(line != shown[i] for i, line in enumerate(lines)), lines  # prefixed
        sets = sorted(shown[1:5])
        assert shown[0] == b'"PING"', shown
        assert sets == [b'"SET" "k%d" "a\\"b\\r\\n\\x00"' % i for i in range(4)], sets
        assert shown[5] == b'"AUTH" "(redacted)"', shown
        assert shown[6] == b'"GET" "k3"', shown
        # RESET ends monitor mode.
        monitor.sendall(b"RESET\r\n")
        clients[0].set("after", "1")
        monitor.settimeout(2)
        rest = monitor.recv(65536)
        assert rest == b"+RESET\r\n", rest
        monitor.close()
        clients[0].set("gone", "1")  # its monitor left: nothing to send
        # A monitor that never reads is closed at the output limit.
        r = connect(server)
        assert r.config_set("client-output-buffer-limit", "normal 4mb 0 0")
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"MONITOR\r\n")
        big = "x" * 60000
        for _ in range(50):  # bounded: at most 50 x 100 x 60 KB
            if r.info("stats")["client_output_buffer_limit_disconnections"] > 0:
                break
            pipe = r.pipeline(transaction=False)
            for i in range(100):
                pipe.set("big%d" % i, big)
            pipe.execute()
        clients_now = [c for c in r.client_list() if c["cmd"] == "monitor"]
        assert clients_now == [], clients_now
        stalled.close()
        assert r.get("big0") == big.encode()
        assert server.alive(), "server died"
    finally:
        server.stop()


@with_server
def test_server_commands(server):
    r = connect(server)
    assert r.echo("hi") == b"hi"
    assert r.client_id() > 0
    assert r.client_setname("me") and r.client_getname() == "me"
    assert "me" in [c["name"] for c in r.client_list()]
    assert r.command_count() > 50
    assert len(r.time()) == 2
    # Memory mode has no log to wait for, and no server has replicas.
    expect_error(lambda: r.execute_command("WAITAOF", "1", "0", "0"), "memory mode")
    assert r.execute_command("WAITAOF", "0", "0", "0") == [0, 0]
    assert r.execute_command("WAIT", "0", "0") == 0
    assert r.config_get("maxclients") == {"maxclients": "10000"}
    assert r.config_set("timeout", 100)
    assert r.config_get("timeout") == {"timeout": "100"}
    expect_error(lambda: r.config_set("port", 1), "can't set immutable config")
    # maxmemory changes at once: below what is stored, writes that add data are refused
    # (nothing is evicted), deletes work, and 0 lifts it.
    r.set("kept", "x" * 1000)
    assert r.config_set("maxmemory", "1kb")
    assert r.config_get("maxmemory") == {"maxmemory": "1024"}
    expect_error(lambda: r.set("refused", "y" * 1000), "OOM command not allowed")
    assert r.get("refused") is None and r.get("kept") == b"x" * 1000
    assert r.delete("kept") == 1
    assert r.config_set("maxmemory", 0)
    assert r.set("refused", "y" * 1000) and r.delete("refused") == 1
    expect_error(lambda: r.config_set("nosuch", 1), "Unknown option")
    expect_error(lambda: r.save(), "not available in memory mode")
    expect_error(lambda: r.bgsave(), "not available in memory mode")
    info = r.info("everything")
    for field in ("redis_version", "connected_clients", "used_memory", "total_commands_processed"):
        assert field in info, field
    # INFO memory: Redis's fields; the peak keeps what a value held after it is deleted.
    before = r.info("memory")
    r.set("big", "x" * (8 << 20))
    held = r.info("memory")["used_memory"]
    r.delete("big")
    # DEL read the key at a snapshot of its own, so the value outlives it until the main
    # thread's housekeeping (shoal_reclaim, hz times a second) gives it back.
    for _ in range(400):  # bounded at 20 s; one housekeeping pass (100 ms) is enough
        memory = r.info("memory")
        if memory["used_memory"] < held - (4 << 20):
            break
        time.sleep(0.05)
    assert held >= before["used_memory"] + (8 << 20), (before, held)
    assert memory["used_memory_peak"] >= held > memory["used_memory"] + (4 << 20), (held, memory)
    assert memory["used_memory_human"].endswith(("B", "K", "M", "G")), memory
    assert memory["maxmemory_human"] == "0B" and memory["mem_allocator"] == "libc", memory
    assert memory["total_system_memory"] > 0 and memory["used_memory_rss"] > 0, memory
    # Segments that grow past their first region ask for huge pages: each request is
    # served by the reserve or missed it.
    pipe = r.pipeline(transaction=False)
    for i in range(40000):
        pipe.set("fill:%d" % i, "v" * 1000)
    pipe.execute()
    memory = r.info("memory")
    assert memory["huge_reserve_taken"] + memory["huge_reserve_missed"] > 0, memory
    r.flushdb()
    assert "cmdstat_echo" in r.info("commandstats")
    # Time is summed in ns: calls shorter than a microsecond each still add up.
    pipe = r.pipeline(transaction=False)
    for _ in range(2000):
        pipe.exists("nothing")
    pipe.execute()
    exists = r.info("commandstats")["cmdstat_exists"]
    median = float(r.info("latencystats")["latency_percentiles_usec_exists"]["p50"])
    assert exists["calls"] >= 2000 and exists["usec"] > 0, exists
    # The mean of a latency is not far below its median (each call's microseconds rounded
    # down made it a tenth of it).
    assert exists["usec_per_call"] >= median / 2, (exists, median)
    assert "latency_percentiles_usec_echo" in r.info("latencystats")
    assert r.acl_whoami() == "default"
    r.select(3)
    r.set("in3", "x")
    assert r.dbsize() == 1
    r.select(0)
    assert r.get("in3") is None
    assert r.flushdb() and r.dbsize() == 0
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"HELLO 3\r\nGET nothing\r\n")
        data = b""
        for _ in range(100):
            data += s.recv(4096)
            if data.endswith(b"_\r\n"):
                break
        assert data.startswith(b"%7\r\n") and data.endswith(b"_\r\n"), data

if __name__ == "__main__":
    harness.run([test_strings, test_pipeline_and_transactions, test_exec_lists_its_own_writes,
                 test_flush_inside_exec, test_copy_and_move, test_memory_and_object,
                 test_watch_conflict, test_concurrent_increments, test_scan_complete_under_writes,
                 test_binary_safe, test_large_value, test_expiry, test_active_expiry_sweeps,
                 test_active_expiry_finds_sparse_keys, test_randomkey_steps_over_hidden_keys,
                 test_slowlog, test_monitor, test_server_commands])
