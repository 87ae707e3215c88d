"""Catalog changes never block an event loop (src/server/catalog.c).

The first use of a database by a tenant, FLUSHDB/FLUSHALL and ACL SETUSER of a new tenant
rewrite the engine's MANIFEST (fsync). With DEBUG FAULT FSYNC-DELAY every fsync sleeps
first (a slow disk) and the server has one event loop, so every client below shares it:

- while client A waits for FLUSHDB, for its first SET into a new database, or for ACL
  SETUSER of a user with a new tenant, client B (on an existing database) gets its PING
  and GET answered, and A's reply is still outstanding when B's have arrived (order of
  arrival, not time); then A's reply is right and its effect is there;
- a pipelined SELECT, SET, GET into a new database is answered OK, OK, v, in order, and
  a pipelined EXEC touching two new databases commits whole;
- FLUSHDB inside MULTI needs no catalog change (it joins the transaction's batch), and
  ACL SETUSER inside EXEC answers an error in its slot;
- clients that disconnect while suspended harm nothing: the server answers others, and
  the databases they asked for are created (seen with `shoal stats` after the stop);
- a shutdown while catalog changes are queued exits 0 (the sanitizer builds check that
  nothing leaks or is used after free);
- eight clients on two loops creating, flushing and binding tenants at once get replies
  of the right form, and the server stops cleanly.

Every wait is bounded in count and by socket timeouts; nothing asserts on time.
"""
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import redis  # noqa: E402

DELAY_MS = "1500"


class DataDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="shoal-catalog-")

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def start(binary, directory, extra=()):
    return harness.Server(binary, ["--threads", "1", "--dir", directory,
                                   "--enable-debug-command", "yes"] + list(extra))


def connect(server, **kwargs):
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=60, **kwargs)


def encode(*words):
    return b"*%d\r\n" % len(words) + b"".join(
        b"$%d\r\n%s\r\n" % (len(w), w) for w in (x.encode() if isinstance(x, str) else x for x in words))


class Raw:
    """A raw connection that sends requests and reads RESP2 replies one by one."""

    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.data = b""

    def send(self, *requests):
        self.sock.sendall(b"".join(encode(*r) for r in requests))

    def _line(self):
        for _ in range(100000):
            end = self.data.find(b"\r\n")
            if end >= 0:
                line, self.data = self.data[:end], self.data[end + 2:]
                return line
            self._more()
        raise AssertionError("no reply line")

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed; read so far: %r" % self.data)
        self.data += chunk

    def reply(self):
        line = self._line()
        kind = line[:1]
        if kind == b"$":
            length = int(line[1:])
            if length < 0:
                return None
            for _ in range(100000):
                if len(self.data) >= length + 2:
                    break
                self._more()
            value, self.data = self.data[:length], self.data[length + 2:]
            return value
        if kind == b"*":
            count = int(line[1:])
            return None if count < 0 else [self.reply() for _ in range(count)]
        return line  # +simple, -error, :integer, as sent

    def has_data(self):
        """True if a reply (or a close) has arrived, without waiting."""
        if self.data:
            return True
        self.sock.setblocking(False)
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(60)
        self.data += chunk
        return True

    def close(self, reset=False):
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def set_delay(r, milliseconds):
    assert r.execute_command("DEBUG", "FAULT", "FSYNC-DELAY", milliseconds) == b"OK"


def client_on_database_0(server):
    """B: a connection already using database 0, so its namespace exists and is cached."""
    b = Raw(server)
    b.send(["GET", "b-key"])
    assert b.reply() == b"b-value"
    return b


def check_b_first(b, a, info=False):
    """B sends PING and GET on the same (only) loop while A waits for the catalog worker:
    B's replies must arrive while A's is still outstanding. With info, B also asks for
    INFO, which reads the engine's catalog during A's change, and its keyspace must be
    right. (That INFO does not wait for the change's MANIFEST write, src/core/internal.h
    C1, cannot be seen from here: one loop answers B's INFO before A's reply either way.
    tests/unit/test_durable.c, test_catalog_change_leaves_readers_free, checks it.)"""
    b.send(["PING"], ["GET", "b-key"])
    assert b.reply() == b"+PONG"
    assert b.reply() == b"b-value"
    if info:
        b.send(["INFO"])
        text = b.reply()
        assert b"# Keyspace" in text and b"db0:keys=1" in text, text[-400:]
    assert not a.has_data(), "A's catalog change was answered before B's PING and GET"


def test_flushdb_does_not_block_the_loop(binary):
    with DataDir() as directory:
        server = start(binary, directory)
        try:
            r = connect(server)
            r.set("b-key", "b-value")
            r1 = connect(server, db=1)
            r1.mset({"x": "1", "y": "2"})
            assert r1.dbsize() == 2
            b = client_on_database_0(server)
            set_delay(r, DELAY_MS)
            try:
                a = Raw(server)
                a.send(["SELECT", "1"], ["FLUSHDB"], ["DBSIZE"])
                assert a.reply() == b"+OK"  # SELECT needs no catalog change
                check_b_first(b, a, info=True)
                assert a.reply() == b"+OK"
                assert a.reply() == b":0"
            finally:
                set_delay(r, "0")
            assert r1.dbsize() == 0 and r1.get("x") is None
            assert r.get("b-key") == b"b-value"  # database 0 untouched
            r1.set("z", "3")  # the new namespace works
            assert r1.get("z") == b"3"
            # FLUSHALL goes the same way (no delay: just the reply and the effect).
            assert r.flushall() and r.dbsize() == 0 and r1.dbsize() == 0
            # Inside MULTI a flush joins the transaction (no catalog change): the write
            # queued before it goes too, the one after it stays.
            r.set("old", "1")
            raw = Raw(server)
            raw.send(["MULTI"], ["SET", "before", "2"], ["FLUSHDB"], ["SET", "after", "3"],
                     ["EXEC"])
            assert [raw.reply() for _ in range(4)] == [b"+OK"] + [b"+QUEUED"] * 3
            assert raw.reply() == [b"+OK"] * 3
            assert r.get("old") is None and r.get("before") is None
            assert r.get("after") == b"3"
            raw.close()
            a.close()
            b.close()
        finally:
            server.stop()


def test_first_use_of_a_database_does_not_block_the_loop(binary):
    with DataDir() as directory:
        # sync none: A's SET then waits for nothing but its namespace, so the order of the
        # replies tells whether the loop waited for the MANIFEST (under the other policies
        # the SET's reply also waits for the log's delayed sync, whatever the loop did).
        server = start(binary, directory, ["--sync", "none"])
        try:
            r = connect(server)
            r.set("b-key", "b-value")
            b = client_on_database_0(server)
            set_delay(r, DELAY_MS)
            try:
                a = Raw(server)
                # Pipelined: SELECT, then a SET and a GET that must wait for the new
                # database and come back in order, each seeing the one before.
                a.send(["SELECT", "5"], ["SET", "k", "v"], ["GET", "k"])
                assert a.reply() == b"+OK"
                check_b_first(b, a, info=True)
                assert a.reply() == b"+OK"
                assert a.reply() == b"v"
                # The same in another new database, all in one pipeline from the start.
                a.send(["SELECT", "7"], ["SET", "k", "seven"], ["GET", "k"])
                assert [a.reply(), a.reply(), a.reply()] == [b"+OK", b"+OK", b"seven"]
            finally:
                set_delay(r, "0")
            assert connect(server, db=5).get("k") == b"v"
            assert connect(server, db=7).get("k") == b"seven"
            assert r.get("k") is None
            # EXEC touching two new databases: it waits for both, then commits whole.
            t = Raw(server)
            t.send(["MULTI"], ["SELECT", "8"], ["SET", "m", "eight"], ["SELECT", "9"],
                   ["SET", "m", "nine"], ["INCR", "n"], ["EXEC"], ["GET", "m"])
            assert [t.reply() for _ in range(6)] == [b"+OK"] + [b"+QUEUED"] * 5
            assert t.reply() == [b"+OK", b"+OK", b"+OK", b"+OK", b":1"]
            assert t.reply() == b"nine"  # SELECT inside EXEC stays, as in Redis
            assert connect(server, db=8).get("m") == b"eight"
            info = r.info("clients")
            assert int(info["blocked_clients"]) == 0
            a.close()
            b.close()
            t.close()
        finally:
            server.stop()


def test_acl_setuser_does_not_block_the_loop(binary):
    with DataDir() as directory:
        server = start(binary, directory)
        try:
            r = connect(server)
            r.set("b-key", "b-value")
            b = client_on_database_0(server)
            set_delay(r, DELAY_MS)
            try:
                a = Raw(server)
                a.send(["ACL", "SETUSER", "carol", "on", ">pw", "tenant=newco", "max-keys=2"],
                       ["ACL", "WHOAMI"])
                check_b_first(b, a, info=True)
                assert a.reply() == b"+OK"
                assert a.reply() == b"default"
            finally:
                set_delay(r, "0")
            carol = connect(server, username="carol", password="pw")
            carol.set("c1", "1")
            carol.set("c2", "2")
            try:
                carol.set("c3", "3")
                raise AssertionError("quota error expected")
            except redis.ResponseError as error:
                assert "OOM" in str(error) and "newco" in str(error), str(error)
            assert r.get("c1") is None  # another tenant
            # Errors keep their texts, and inside EXEC SETUSER is refused in its slot.
            try:
                r.execute_command("ACL", "SETUSER", "dave", "bogus-rule")
                raise AssertionError("syntax error expected")
            except redis.ResponseError as error:
                assert "Syntax error" in str(error), str(error)
            raw = Raw(server)
            raw.send(["MULTI"], ["ACL", "SETUSER", "erin", "on"], ["PING"], ["EXEC"])
            assert [raw.reply(), raw.reply(), raw.reply()] == [b"+OK", b"+QUEUED", b"+QUEUED"]
            replies = raw.reply()
            assert replies[0].startswith(b"-ERR ACL SETUSER inside MULTI"), replies
            assert replies[1] == b"+PONG"
            assert b"erin" not in r.execute_command("ACL", "USERS")
            a.close()
            b.close()
            raw.close()
        finally:
            server.stop()


def test_disconnect_while_suspended(binary):
    with DataDir() as directory:
        server = start(binary, directory)
        stopped = False
        try:
            r = connect(server)
            r.set("b-key", "b-value")
            set_delay(r, "300")
            try:
                for number, db in enumerate((3, 4, 6)):
                    gone = Raw(server)
                    gone.send(["SELECT", str(db)], ["SET", "k", "v"], ["GET", "k"])
                    assert gone.reply() == b"+OK"
                    gone.close(reset=number % 2 == 1)
                    # The server keeps serving others on the same loop.
                    assert r.ping() and r.get("b-key") == b"b-value"
                # The worker runs changes in order: once a later one is answered, the
                # ones asked by the clients that went away have been made.
                last = Raw(server)
                last.send(["SELECT", "12"], ["SET", "k", "v"])
                assert last.reply() == b"+OK" and last.reply() == b"+OK"
                last.close()
                assert int(r.info("clients")["blocked_clients"]) == 0
            finally:
                set_delay(r, "0")
            assert harness.connected_clients_settled(r, 1) == 1
            assert r.get("b-key") == b"b-value"
            server.stop()
            stopped = True
            # The databases were created all the same (the engine's catalog has them).
            tool = os.path.join(os.path.dirname(os.path.abspath(binary)), "shoal")
            if os.path.exists(tool):
                output = subprocess.run([tool, "stats", directory], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, timeout=120).stdout.decode()
                for db in (3, 4, 6):
                    assert "default/%d " % db in output, output
        finally:
            if not stopped:
                server.stop()


def test_shutdown_with_catalog_changes_queued(binary):
    with DataDir() as directory:
        server = start(binary, directory)
        r = connect(server)
        for db in range(7):
            connect(server, db=db).set("k", "v")
        set_delay(r, "1000")
        # FLUSHALL of seven databases: fourteen MANIFEST writes, at least 14 s. Behind it
        # in the worker's queue, two clients wait for new databases.
        flusher = Raw(server)
        flusher.send(["FLUSHALL"])
        waiting = []
        for db in (12, 13):
            w = Raw(server)
            w.send(["SELECT", str(db)], ["SET", "k", "v"])
            assert w.reply() == b"+OK"
            waiting.append(w)
        # SIGTERM while the worker is busy: the loop waits (at most 10 s) for the changes
        # its clients wait for, then closes them; the worker finishes the FLUSHALL and
        # abandons the two changes it has not started; the exit code is 0 and, in the
        # sanitizer builds, nothing leaks and nothing is used after it was freed.
        server.stop()
        assert "2 catalog changes were not started" in server.log_text(), server.log_text()
        for w in [flusher] + waiting:
            try:
                reply = w.reply()
            except (AssertionError, OSError):
                reply = None  # closed without a reply, as it should be
            assert reply is None, "a reply after the shutdown gave up on it: %r" % reply
            w.close()


def test_concurrent_catalog_changes(binary):
    """Two loops, eight clients: first uses of databases, FLUSHDB, FLUSHALL (also inside
    EXEC), EXEC in new databases and ACL SETUSER, all at once (memory mode: the same worker path). Every
    reply has the right form and the server stops cleanly; the sanitizer builds look
    for races and leaks."""
    server = harness.Server(binary, ["--threads", "2"])
    errors = []

    def client(number):
        rnd = random.Random(number)
        r = connect(server)
        try:
            for i in range(150):  # bounded
                db = rnd.randrange(16)
                pipe = r.pipeline(transaction=False)
                pipe.execute_command("SELECT", db)
                pipe.set("k%d" % number, i)
                pipe.get("k%d" % number)
                flushes = 0
                if rnd.random() < 0.1:
                    pipe.flushdb()
                    flushes += 1
                if rnd.random() < 0.03:
                    pipe.flushall()
                    flushes += 1
                replies = pipe.execute()
                assert replies[:2] == [True, True], replies
                assert replies[2] in (str(i).encode(), None), replies  # None: flushed by another
                assert replies[3:] == [True] * flushes, replies
                if rnd.random() < 0.1:
                    with r.pipeline(transaction=True) as t:
                        t.execute_command("SELECT", rnd.randrange(16)).set("t", 1).get("t")
                        assert t.execute() == [True, True, b"1"]
                if rnd.random() < 0.05:
                    # A flush inside EXEC holds new databases back until its commit, while
                    # the others' first uses wait for the worker.
                    with r.pipeline(transaction=True) as t:
                        t.set("f", 1).execute_command(rnd.choice(["FLUSHALL", "FLUSHDB"]))
                        t.dbsize().set("f", 2).get("f")
                        assert t.execute() == [True, True, 0, True, b"2"]
                if rnd.random() < 0.03:
                    user = "u%d" % rnd.randrange(4)
                    assert r.execute_command("ACL", "SETUSER", user, "on", "nopass",
                                             "tenant=t%d" % rnd.randrange(3)) == b"OK"
                    assert connect(server, username=user, password="x").set("a", 1)
        except Exception as error:  # reported by the main thread
            errors.append(repr(error))
        finally:
            r.close()

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert not any(t.is_alive() for t in threads), "a client never finished"
        assert not errors, errors[:3]
        r = connect(server)
        assert int(r.info("clients")["blocked_clients"]) == 0
        assert r.ping()
    finally:
        server.stop()


if __name__ == "__main__":
    harness.run([
        test_flushdb_does_not_block_the_loop,
        test_first_use_of_a_database_does_not_block_the_loop,
        test_acl_setuser_does_not_block_the_loop,
        test_disconnect_while_suspended,
        test_shutdown_with_catalog_changes_queued,
        test_concurrent_catalog_changes,
    ])
