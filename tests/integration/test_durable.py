"""shoal-server in durable mode: what a client was told is durable survives.

- kill -9 after writes acknowledged under sync periodic and batch: all there;
- kill -9 in the middle of a load (redis-benchmark in the background plus python clients
  that record every acknowledged SET, single and pipelined) under sync=always: after a
  restart on the same directory every acknowledged key has its value;
- SIGTERM, then a restart: every key of every database and tenant, expiries and deletes;
- SAVE, BGSAVE, BGSAVE SCHEDULE, LASTSAVE, INFO persistence, CONFIG GET appendonly;
- a pipeline under sync=always gets its replies in order (reads between writes too),
  and its writes are synced in groups, not one fdatasync each;
- MULTI/EXEC under sync=always survives kill -9;
- clients that disconnect with writes in flight harm nothing; one that only shuts its
  write side gets every reply, its writes made;
- a failed fdatasync (DEBUG FAULT FSYNC) answers -MISCONF, and the server refuses writes
  but serves reads;
- the mode settings: --mode durable without a directory, SHOAL_DIR, SHOAL_MODE=memory,
  appendfsync in a config file, a directory already in use.

Every loop is bounded; nothing asserts on time.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import redis  # noqa: E402


def connect(server, **kwargs):
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=60, **kwargs)


def info(r, section="persistence"):
    return r.info(section)


class DataDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="shoal-durable-")

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def kill9(server):
    os.kill(server.pid, signal.SIGKILL)
    server.process.wait(timeout=30)


def start(binary, directory, extra=(), **kwargs):
    return harness.Server(binary, ["--threads", "2", "--dir", directory] + list(extra), **kwargs)


def expect_error(function, text):
    try:
        function()
    except redis.ResponseError as error:
        assert text in str(error), "expected %r in %r" % (text, str(error))
        return
    raise AssertionError("expected an error containing %r" % text)


def test_kill9_under_load_keeps_acknowledged_writes(binary):
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always"])
        acknowledged = {}
        lock = threading.Lock()
        stop = threading.Event()

        def single_writer(number):
            r = connect(server)
            for i in range(100000):  # bounded; stopped by the kill long before
                if stop.is_set():
                    return
                key, value = "single:%d:%d" % (number, i), "value-%d-%d" % (number, i)
                try:
                    r.set(key, value)
                except (redis.ConnectionError, redis.TimeoutError):
                    return  # the outcome of this one is unknown: not recorded
                with lock:
                    acknowledged[key] = value.encode()

        def pipelined_writer():
            r = connect(server)
            for batch in range(10000):
                if stop.is_set():
                    return
                pipe = r.pipeline(transaction=False)
                pairs = [("pipe:%d:%d" % (batch, i), "p%d" % (batch * 100 + i)) for i in range(50)]
                for key, value in pairs:
                    pipe.set(key, value)
                try:
                    replies = pipe.execute()
                except (redis.ConnectionError, redis.TimeoutError):
                    return
                assert replies == [True] * 50
                with lock:
                    for key, value in pairs:
                        acknowledged[key] = value.encode()

        benchmark = subprocess.Popen(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-t", "set",
             "-n", "2000000", "-r", "100000", "-c", "20", "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        threads = [threading.Thread(target=single_writer, args=(n,)) for n in range(4)]
        threads.append(threading.Thread(target=pipelined_writer))
        for t in threads:
            t.start()
        # Kill once enough writes were acknowledged, while the benchmark still runs.
        r = connect(server)
        for _ in range(100000):
            with lock:
                count = len(acknowledged)
            if count >= 5000:
                break
            r.ping()  # paces the wait without a timed sleep
        assert benchmark.poll() is None, "redis-benchmark finished before the kill"
        pending = int(r.info("persistence")["pending_durable_writes"])
        kill9(server)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        benchmark.kill()
        benchmark.wait()
        with lock:
            expected = dict(acknowledged)
        assert len(expected) >= 5000, len(expected)

        server = start(binary, directory, ["--sync", "always"])
        try:
            r = connect(server)
            keys = list(expected)
            missing = []
            for start_index in range(0, len(keys), 1000):
                chunk = keys[start_index:start_index + 1000]
                for key, value in zip(chunk, r.mget(chunk)):
                    if value != expected[key]:
                        missing.append((key, expected[key], value))
            assert not missing, "%d acknowledged keys lost or wrong, e.g. %r" % (len(missing), missing[:5])
            stats = r.info("persistence")
            assert int(stats["recovered_log_records"]) + int(stats["recovered_checkpoint_keys"]) > 0
            print("  %d acknowledged keys checked after kill -9 (%s writes were waiting for the log "
                  "at the kill)" % (len(expected), pending))
        finally:
            server.stop()


def test_periodic_survives_kill9(binary):
    """sync periodic (the default) acknowledges once the record is written to the operating
    system: a kill -9 of the process (not of the machine) loses nothing acknowledged."""
    for policy in ("periodic", "batch"):
        with DataDir() as directory:
            server = start(binary, directory, ["--sync", policy])
            r = connect(server)
            pipe = r.pipeline(transaction=False)
            for i in range(2000):
                pipe.set("k%d" % i, "v%d" % i)
            assert pipe.execute() == [True] * 2000
            for i in range(200):
                r.incr("counter")
            kill9(server)
            server = start(binary, directory, ["--sync", policy])
            try:
                r = connect(server)
                values = r.mget(["k%d" % i for i in range(2000)])
                assert values == [("v%d" % i).encode() for i in range(2000)], policy
                assert r.get("counter") == b"200", policy
            finally:
                server.stop()


def test_sigterm_restart_keeps_everything(binary):
    config = "user alice on >pw tenant=acme\n"
    with DataDir() as directory:
        server = start(binary, directory, config_text=config)
        r = connect(server)
        for i in range(2000):
            r.set("k%d" % i, "v%d" % i)
        r.mset({"m1": "a", "m2": "b"})
        r.incrby("counter", 41)
        r.incr("counter")
        r.append("m1", "bc")
        r.delete("k0", "k1")
        r.set("ttl", "x", ex=100000)
        with r.pipeline(transaction=True) as pipe:
            pipe.set("t1", "1").set("t2", "2").incr("counter")
            assert pipe.execute() == [True, True, 43]
        r3 = connect(server, db=3)
        r3.set("in-db-3", "three")
        alice = connect(server, username="alice", password="pw")
        alice.set("secret", "acme-only")
        assert r.dbsize() == 2000 - 2 + 2 + 1 + 1 + 2  # k*, m1 m2, counter, ttl, t1 t2
        # Set last and not counted: active expiry may remove it at any moment from now.
        r.set("gone", "x", px=1)
        server.stop()  # SIGTERM: exit 0 after the closing checkpoint

        server = start(binary, directory, config_text=config)
        try:
            r = connect(server)
            assert r.get("gone") is None  # expired: a read deletes it
            assert r.dbsize() == 2000 - 2 + 2 + 1 + 1 + 2
            values = r.mget(["k%d" % i for i in range(2000)])
            assert values[0] is None and values[1] is None
            assert values[2:] == [("v%d" % i).encode() for i in range(2, 2000)]
            assert r.get("m1") == b"abc" and r.get("m2") == b"b"
            assert r.get("counter") == b"43"
            assert r.get("t1") == b"1" and r.get("t2") == b"2"
            assert 0 < r.ttl("ttl") <= 100000
            assert connect(server, db=3).get("in-db-3") == b"three"
            assert r.get("secret") is None, "another tenant's key is visible"
            alice = connect(server, username="alice", password="pw")
            assert alice.get("secret") == b"acme-only"
            assert alice.dbsize() == 1
            stats = r.info("persistence")
            assert stats["mode"] == "durable" and int(stats["aof_enabled"]) == 1
            assert int(stats["recovered_checkpoint_keys"]) >= 2000
        finally:
            server.stop()


def raw_line(server, line):
    """Sends one inline command on a fresh connection and returns the first reply line."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(line + b"\r\n")
        data = b""
        for _ in range(1000):
            if b"\r\n" in data:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[0]


def test_save_bgsave_lastsave(binary):
    with DataDir() as directory:
        server = start(binary, directory)
        try:
            r = connect(server)
            before = r.lastsave()
            r.set("a", "1")
            assert info(r)["rdb_changes_since_last_save"] >= 1
            assert r.save() is True
            assert r.lastsave() >= before
            stats = info(r)
            assert stats["rdb_changes_since_last_save"] == 0
            assert stats["rdb_saves"] >= 1
            saves = stats["rdb_saves"]
            r.set("b", "2")
            assert raw_line(server, b"BGSAVE") == b"+Background saving started"
            for _ in range(10000):  # bounded wait for the background checkpoint
                stats = info(r)
                if stats["rdb_bgsave_in_progress"] == 0:
                    break
                r.ping()
            assert stats["rdb_bgsave_in_progress"] == 0
            assert stats["rdb_last_bgsave_status"] == "ok"
            assert stats["rdb_saves"] >= saves + 1
            reply = raw_line(server, b"BGSAVE SCHEDULE")
            assert reply in (b"+Background saving started", b"+Background saving scheduled"), reply
            expect_error(lambda: r.execute_command("BGSAVE", "NOW"), "syntax error")
            config = r.config_get("append*")
            assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
            assert stats["aof_enabled"] == 1 and stats["sync"] == "periodic"
            assert int(r.lastsave().timestamp()) == int(info(r)["rdb_last_save_time"])
        finally:
            server.stop()


def read_replies(sock, count):
    """Reads count RESP2 replies (simple, error, integer, bulk) from a raw socket."""
    data = b""
    replies = []
    position = 0
    for _ in range(100000):
        while len(replies) < count:
            end = data.find(b"\r\n", position)
            if end < 0:
                break
            kind = data[position:position + 1]
            if kind == b"$":
                length = int(data[position + 1:end])
                if length < 0:
                    replies.append(None)
                    position = end + 2
                    continue
                if len(data) < end + 2 + length + 2:
                    break
                replies.append(data[end + 2:end + 2 + length])
                position = end + 2 + length + 2
            else:
                replies.append(data[position:end])
                position = end + 2
        if len(replies) >= count:
            return replies
        chunk = sock.recv(65536)
        if not chunk:
            return replies
        data += chunk
    return replies


def test_pipeline_replies_in_order_and_grouped(binary):
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always", "--enable-debug-command", "yes"])
        try:
            r = connect(server)
            # A slow disk (every sync takes 20 ms): one sync per write would make the
            # pipeline below take 40 s and at least 2000 syncs; grouped, it takes as many
            # syncs as 20 ms periods the server needs to run it, whatever its speed.
            assert r.execute_command("DEBUG", "FAULT", "FSYNC-DELAY", "20") == b"OK"
            syncs_before = int(info(r)["log_syncs"])
            # Writes and reads interleaved in one pipeline: each read must see the write
            # before it, and the replies must come back in request order.
            commands = []
            expected = []
            for i in range(1000):
                commands.append(["SET", "p%d" % i, "v%d" % i])
                expected.append(b"+OK")
                commands.append(["GET", "p%d" % i])
                expected.append(b"v%d" % i)
                commands.append(["INCR", "n"])
                expected.append(b":%d" % (i + 1))
                if i % 100 == 0:
                    commands.append(["PING"])
                    expected.append(b"+PONG")
            payload = b"".join(
                b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in c)
                for c in commands)
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                sock.sendall(payload)
                replies = read_replies(sock, len(expected))
            assert len(replies) == len(expected), (len(replies), len(expected))
            for index, (got, want) in enumerate(zip(replies, expected)):
                assert got == want, "reply %d: %r, expected %r" % (index, got, want)
            stats = info(r)
            syncs = int(stats["log_syncs"]) - syncs_before
            # 2000 writes (SET and INCR); one fdatasync each would be 2000 syncs.
            assert syncs < 200, "the pipeline's writes were not grouped: %d syncs" % syncs
            assert r.execute_command("DEBUG", "FAULT", "FSYNC-DELAY", "0") == b"OK"
            assert int(stats["pending_durable_writes"]) == 0
            # redis-py's pipeline too, with MULTI/EXEC inside.
            pipe = r.pipeline(transaction=False)
            for i in range(200):
                pipe.set("q%d" % i, i)
                pipe.get("q%d" % i)
            results = pipe.execute()
            assert results == [x for i in range(200) for x in (True, str(i).encode())]
            with r.pipeline(transaction=True) as transaction:
                transaction.set("inside", "1").incr("n").get("inside")
                assert transaction.execute() == [True, 1001, b"1"]
        finally:
            server.stop()


def test_small_groups_synced_on_the_loop(binary):
    """One client's unpipelined writes are synced by the loop itself (nothing else to do);
    a pipeline's large group goes to the log's thread; so does every group while the disk
    is slow (DEBUG FAULT FSYNC-DELAY). Every reply still comes after its sync, and the
    writes survive kill -9."""
    def groups(r):
        stats = info(r)
        return (int(stats["reply_groups_synced_on_loop"]),
                int(stats["reply_groups_handed_to_log"]))

    with DataDir() as directory:
        # Any disk counts as fast here (loop-sync-max-us), so the outcome does not depend on
        # the machine's speed; the slow part below sets the default back.
        server = start(binary, directory, ["--sync", "always", "--enable-debug-command", "yes",
                                           "--loop-sync-max-us", "60000000"])
        try:
            r = connect(server)
            syncs_before = int(info(r)["log_syncs"])
            on_loop, handed = groups(r)
            for i in range(20):
                assert r.set("single:%d" % i, i) is True
            after_loop, _ = groups(r)
            assert after_loop > on_loop, (on_loop, after_loop)
            assert int(info(r)["log_syncs"]) > syncs_before
            assert float(info(r)["log_sync_avg_us"]) > 0

            pipe = r.pipeline(transaction=False)
            for i in range(5000):
                pipe.set("piped:%d" % i, i)
            assert all(pipe.execute())
            _, after_handed = groups(r)
            assert after_handed > handed, (handed, after_handed)

            # A slow disk: after one group synced on the loop takes 20 ms, the average
            # says slow, and the next groups go to the log's thread.
            assert r.execute_command("DEBUG", "FAULT", "FSYNC-DELAY", "20") == b"OK"
            assert r.config_set("loop-sync-max-us", 1000)
            on_loop, handed = groups(r)
            for i in range(6):
                assert r.set("slow:%d" % i, i) is True
            after_loop, after_handed = groups(r)
            assert after_loop - on_loop <= 1 and after_handed - handed >= 5, (
                on_loop, after_loop, handed, after_handed)
            assert r.execute_command("DEBUG", "FAULT", "FSYNC-DELAY", "0") == b"OK"
            kill9(server)
            server = start(binary, directory, ["--sync", "always"])
            r = connect(server)
            assert r.get("single:19") == b"19" and r.get("piped:4999") == b"4999"
            assert r.get("slow:5") == b"5"
        finally:
            server.stop()


def test_client_reply_off_with_held_replies(binary):
    """Under sync=always replies wait for the log; CLIENT REPLY OFF and SKIP drop them all
    the same, in order, and the writes are made (and durable: a restart finds them)."""
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always"])
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            sock.sendall(b"CLIENT REPLY OFF\r\nSET a 1\r\nSET b 2\r\nCLIENT REPLY ON\r\n"
                         b"GET a\r\nCLIENT REPLY SKIP\r\nSET c 3\r\nGET c\r\n")
            assert read_replies(sock, 3) == [b"+OK", b"1", b"3"]
        kill9(server)
        server = start(binary, directory, ["--sync", "always"])
        try:
            assert connect(server).mget("a", "b", "c") == [b"1", b"2", b"3"]
        finally:
            server.stop()


def test_multi_exec_survives_kill9(binary):
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always"])
        r = connect(server)
        for i in range(100):
            with r.pipeline(transaction=True) as pipe:
                pipe.set("a%d" % i, i).set("b%d" % i, i).incr("total")
                assert pipe.execute() == [True, True, i + 1]
        # A flush inside EXEC is logged with the transaction: after it only "after" is
        # left of database 1.
        r1 = connect(server, db=1)
        r1.mset({"gone%d" % i: i for i in range(50)})
        with r1.pipeline(transaction=True) as pipe:
            pipe.set("gone-too", 1).flushdb().set("after", "1")
            assert pipe.execute() == [True, True, True]
        kill9(server)
        server = start(binary, directory, ["--sync", "always"])
        try:
            r = connect(server)
            assert r.get("total") == b"100"
            assert r.mget(["a%d" % i for i in range(100)]) == [str(i).encode() for i in range(100)]
            assert r.mget(["b%d" % i for i in range(100)]) == [str(i).encode() for i in range(100)]
            assert connect(server, db=1).keys("*") == [b"after"]
        finally:
            server.stop()


def set_pipeline(keys):
    """A raw pipeline of SET key x for each key."""
    return b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nx\r\n" % (len(k), k) for k in keys)


def reset_on_close(sock):
    """Makes close send a reset instead of a FIN: the server's next write to it fails."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def assert_nothing_waits(r):
    """No write waits for the log any more and only r is still connected."""
    for _ in range(10000):  # bounded
        if int(info(r)["pending_durable_writes"]) == 0:
            break
        r.ping()
    assert int(info(r)["pending_durable_writes"]) == 0
    assert harness.connected_clients_settled(r, 1) == 1


def test_disconnect_with_writes_in_flight(binary):
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always"])
        try:
            payload = set_pipeline(b"gone%04d" % i for i in range(200))
            for number in range(150):  # bounded: 150 clients that never read all replies
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(payload)
                if number % 3 == 1:
                    reset_on_close(sock)  # possibly while the server releases held replies
                elif number % 3 == 2:
                    sock.recv(16)  # some replies arrived: the rest are still held or sent
                    reset_on_close(sock)
                sock.close()
            r = connect(server)
            # The writes were applied (or some were not read at all before the close);
            # the server keeps serving and nothing waits for ever.
            assert r.ping()
            assert_nothing_waits(r)
            r.set("after", "ok")
            assert r.get("after") == b"ok"
            assert server.alive()
        finally:
            server.stop()


def test_resets_among_pipelined_clients(binary):
    """Many pipelining clients at once, half of them resetting their connection while their
    replies are held: the loop releases replies between the events of a round, so a client
    may be closed by a release while its own event of that round is still to come. Every
    client that stays gets all its replies in order; nothing is left waiting."""
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always"])
        try:
            r = connect(server)
            for batch in range(30):  # bounded: 30 batches of 16 clients
                socks = []
                for number in range(16):
                    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                    sock.sendall(set_pipeline(b"mid%02d:%02d:%03d" % (batch, number, i)
                                              for i in range(200)))
                    socks.append(sock)
                for number, sock in enumerate(socks):
                    if number % 2 == 1:
                        reset_on_close(sock)
                        sock.close()
                for number, sock in enumerate(socks):
                    if number % 2 == 0:
                        assert read_replies(sock, 200) == [b"+OK"] * 200, (batch, number)
                        sock.close()
                assert r.exists(b"mid%02d:00:199" % batch) == 1
            assert_nothing_waits(r)
            assert server.alive()
        finally:
            server.stop()


def test_input_end_runs_what_was_read(binary):
    """A client that sends its requests and shuts its write side (as `nc -N` or a shell
    pipe does) gets every reply and every write is made, under sync always and with its
    first request waiting for a catalog change (the first use of a database), then the
    server closes the connection: nothing read before the end of input is dropped."""
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always"])
        try:
            for db in range(3, 6):  # bounded: three fresh databases, three clients
                requests = b"SELECT %d\r\n" % db + b"".join(
                    b"SET end%03d %d\r\n" % (i, db) for i in range(300)) + b"GET end299\r\n"
                with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                    sock.sendall(requests)
                    sock.shutdown(socket.SHUT_WR)
                    data = b""
                    for _ in range(100000):
                        chunk = sock.recv(65536)
                        if not chunk:
                            break  # the server closed once everything was answered
                        data += chunk
                assert data == b"+OK\r\n" * 301 + b"$1\r\n%d\r\n" % db, data[-64:]
                r = connect(server, db=db)
                assert r.dbsize() == 300 and r.get("end000") == b"%d" % db
                r.connection_pool.disconnect()
            # and no connection stays behind: each closed once it was answered.
            assert harness.connected_clients_settled(connect(server), 1) == 1
        finally:
            server.stop()


def test_failed_sync_answers_misconf(binary):
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always", "--enable-debug-command", "yes"])
        try:
            r = connect(server)
            r.set("before", "1")
            assert r.execute_command("DEBUG", "FAULT", "FSYNC") == b"OK"
            # A pipeline: the first write's sync fails; its reply becomes the error, the
            # replies after it cannot be told apart any more, and the connection closes.
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                sock.sendall(b"SET p1 x\r\nGET before\r\nSET p2 y\r\nPING\r\n")
                data = b""
                for _ in range(1000):  # until the server closes the connection
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            assert data.startswith(b"-MISCONF"), data
            assert data.count(b"\r\n") == 1, "replies after the failed write were sent: %r" % data
            # From now on writes are refused at once, reads still work.
            expect_error(lambda: r.set("after", "2"), "MISCONF")
            assert r.get("before") == b"1"
            stats = info(r)
            assert stats["read_only"] == 1 and stats["read_only_cause"] != "none"
            assert stats["aof_last_write_status"] == "err"
            assert int(stats["durability_failures"]) >= 1
            expect_error(lambda: r.save(), "MISCONF")
        finally:
            server.stop()
        # What was acknowledged before the failure is there after a restart.
        server = start(binary, directory)
        try:
            assert connect(server).get("before") == b"1"
        finally:
            server.stop()


def test_waitaof_syncs_the_log(binary):
    """WAITAOF 1 0 0 answers once every write logged so far is on disk, whatever the sync
    policy: it makes the log sync (log_syncs grows), and with every fsync failing (DEBUG
    FAULT FSYNC) a write under sync none or periodic is still acknowledged, since it waits
    for no sync, while WAITAOF after it answers MISCONF. Inside EXEC it does not wait."""
    policies = (["--sync", "none"], ["--sync", "periodic", "--sync-period-ms", "3600000"])
    for policy in policies:
        with DataDir() as directory:
            server = start(binary, directory, policy + ["--enable-debug-command", "yes"])
            try:
                r = connect(server)
                waitaof = ("WAITAOF", "1", "0", "0")
                assert r.execute_command(*waitaof) == [1, 0]  # nothing logged yet
                r.set("k", "v")
                syncs = int(info(r)["log_syncs"])
                assert r.execute_command(*waitaof) == [1, 0]
                assert int(info(r)["log_syncs"]) > syncs, policy
                assert r.execute_command("WAITAOF", "0", "0", "0") == [0, 0]
                pipe = r.pipeline(transaction=True)
                pipe.set("t", "1").execute_command(*waitaof)
                assert pipe.execute() == [True, [0, 0]]
                assert r.execute_command("DEBUG", "FAULT", "FSYNC") == b"OK"
                assert r.set("unsynced", "1")
                expect_error(lambda: r.execute_command(*waitaof), "MISCONF")
            finally:
                server.stop()
    with DataDir() as directory:
        server = start(binary, directory, ["--sync", "always"])
        try:
            r = connect(server)
            r.set("k", "v")
            assert r.execute_command("WAITAOF", "0", "0", "0") == [1, 0]
            assert r.execute_command("WAITAOF", "1", "1", "10") == [1, 0]
            assert r.execute_command("WAIT", "1", "10") == 0
            expect_error(lambda: r.execute_command("WAITAOF", "1", "0", "-1"), "negative")
        finally:
            server.stop()


def run_expecting_failure(binary, args, env=None):
    full_env = dict(os.environ)
    full_env.pop("SHOAL_DIR", None)
    full_env.pop("SHOAL_MODE", None)
    if env:
        full_env.update(env)
    process = subprocess.run([binary, "--port", "0"] + args, env=full_env, timeout=60,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process.returncode, process.stdout.decode(errors="replace")


def test_mode_settings(binary):
    code, output = run_expecting_failure(binary, ["--mode", "durable"])
    assert code == 1 and "needs a directory" in output, output
    code, output = run_expecting_failure(binary, ["--sync", "sometimes"])
    assert code == 1 and "always|batch|periodic|none" in output, output
    with DataDir() as directory:
        server = harness.Server(binary, ["--threads", "1"], env={"SHOAL_DIR": directory})
        try:
            r = connect(server)
            assert info(r)["mode"] == "durable"
            r.set("x", "1")
            # One process per directory.
            code, output = run_expecting_failure(binary, ["--dir", directory])
            assert code == 1 and "another process" in output, output
        finally:
            server.stop()
        server = harness.Server(binary, ["--dir", directory], env={"SHOAL_MODE": "memory"})
        try:
            r = connect(server)
            assert info(r)["mode"] == "memory" and r.get("x") is None
            expect_error(lambda: r.save(), "not available in memory mode")
        finally:
            server.stop()
        server = harness.Server(binary, [], config_text="dir %s\nappendfsync always\nappendonly yes\n"
                                                        "save \"\"\n" % directory)
        try:
            r = connect(server)
            stats = info(r)
            assert stats["mode"] == "durable" and stats["sync"] == "always"
            assert r.config_get("appendfsync")["appendfsync"] == "always"
            assert r.get("x") == b"1"
        finally:
            server.stop()


if __name__ == "__main__":
    harness.run([
        test_kill9_under_load_keeps_acknowledged_writes,
        test_periodic_survives_kill9,
        test_sigterm_restart_keeps_everything,
        test_save_bgsave_lastsave,
        test_pipeline_replies_in_order_and_grouped,
        test_multi_exec_survives_kill9,
        test_small_groups_synced_on_the_loop,
        test_client_reply_off_with_held_replies,
        test_disconnect_with_writes_in_flight,
        test_resets_among_pipelined_clients,
        test_input_end_runs_what_was_read,
        test_failed_sync_answers_misconf,
        test_waitaof_syncs_the_log,
        test_mode_settings,
    ])
