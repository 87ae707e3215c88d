"""Replies byte for byte against Redis itself, in RESP2 and RESP3.

The same random sequence (fixed seeds, bounded count) of requests, some in pipelined
bursts, goes over raw sockets to shoal-server and to Debian's redis-server, once in RESP2,
once after HELLO 3, and once with shoal-server durable under sync always (its replies held
until their records are on disk); each reply's bytes must be the same. Besides the string
and key-space commands of test_compat.py it sends transactions (MULTI, EXEC, DISCARD, with
queued errors, nested MULTI, EXEC without MULTI), wrong arities, unknown commands, PING and
ECHO, SELECT, DBSIZE and inline commands, so the reply types (simple strings, errors,
integers, bulk and null replies, arrays, RESP3 nulls, doubles and maps) and Redis's error
texts are compared exactly; so are the replies around AUTH with a password set, and what
comes back for malformed frames before the connection closes. Requests whose replies name
a time or the server (TTL and PTTL values, EXPIRETIME, TIME, INFO, CLIENT LIST, HELLO's own
reply) or Redis's memory layout (OBJECT, whose encoding and shared-integer refcounts
depend on a value's history there) are left out, and no key expires during a run.
"""
import random
import re
import shutil
import socket
import tempfile
import time

import harness

KEYS = ["k1", "k2", "n1", "f1", "gone"]
REQUESTS = 3000


class Raw:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.data = b""

    def send(self, args):
        out = b"*%d\r\n" % len(args)
        for arg in args:
            arg = arg if isinstance(arg, bytes) else str(arg).encode()
            out += b"$%d\r\n%s\r\n" % (len(arg), arg)
        self.sock.sendall(out)

    def send_inline(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def _need(self, n):
        for _ in range(100000):
            if len(self.data) >= n:
                return
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.data += chunk
        raise TimeoutError("reply too slow")

    def _line_end(self, start):
        for _ in range(100000):
            end = self.data.find(b"\r\n", start)
            if end >= 0:
                return end
            self._need(len(self.data) + 1)
        raise TimeoutError("no line end")

    def _skip(self, pos):
        """The position after the reply that starts at pos."""
        end = self._line_end(pos)
        kind, head = self.data[pos:pos + 1], self.data[pos + 1:end]
        after = end + 2
        if kind in b"$!=":
            length = int(head)
            if length < 0:
                return after
            self._need(after + length + 2)
            return after + length + 2
        if kind in b"*~>%|":
            count = int(head)
            if count < 0:
                return after
            for _ in range(count * (2 if kind in b"%|" else 1)):
                after = self._skip(after)
            return after
        return after  # + - : _ # , ( : one line

    def reply(self):
        end = self._skip(0)
        raw, self.data = self.data[:end], self.data[end:]
        return raw

    def close(self):
        self.sock.close()


def value(rng):
    return rng.choice(["", "v", "hello", "10", "-7", "3.5", "abc" * 3, "9223372036854775807",
                       "\x00\r\n"])


def far(rng):
    """An expiry far ahead, unlike any other (see test_compat.py)."""
    return str(rng.randint(10 ** 5, 10 ** 9))


def number(rng):
    return rng.choice(["0", "1", "-1", "5", "100", "x", "1.5", ""])


def request(rng):
    key, other = rng.choice(KEYS), rng.choice(KEYS)
    choices = [
        ["SET", key, value(rng)], ["SET", key, value(rng), rng.choice(["NX", "XX", "GET"])],
        ["SET", key, value(rng), "EX", rng.choice([far(rng), "x", "0"])], ["SET", key],
        ["GET", key], ["GET"], ["GETSET", key, value(rng)], ["GETDEL", key],
        ["MGET", key, other], ["MSET", key, value(rng), other], ["MSET", key, value(rng)],
        ["MSETNX", key, value(rng), other, value(rng)], ["APPEND", key, value(rng)],
        ["STRLEN", key], ["GETRANGE", key, number(rng), number(rng)],
        ["SETRANGE", key, number(rng), value(rng)], ["INCR", key], ["DECRBY", key, number(rng)],
        ["INCRBYFLOAT", key, number(rng)], ["DEL", key, other], ["EXISTS", key, key],
        ["TYPE", key], ["RENAME", key, other], ["RENAMENX", key, other], ["PERSIST", key],
        ["EXPIRE", key, rng.choice([far(rng), "x"])]
        + rng.sample(["NX", "XX", "GT", "LT"], rng.randint(0, 1)),
        ["DBSIZE"], ["PING"], ["PING", value(rng)], ["PING", "a", "b"], ["ECHO", value(rng)],
        ["ECHO"], ["SELECT", rng.choice(["0", "1", "99", "x"])], ["NOSUCHCOMMAND", key],
        ["MULTI"], ["EXEC"], ["DISCARD"], ["UNLINK", key], ["TOUCH", key, other],
        ["SETNX", key, value(rng)], ["SETEX", key, rng.choice([far(rng), "0", "x"]), value(rng)],
        ["GETEX", key, rng.choice(["PERSIST", "EX"])], ["COPY", key, other],
        ["BITCOUNT", key], ["SETBIT", key, rng.choice(["3", "x"]), "1"],
        ["BITPOS", key, rng.choice(["0", "1"]), number(rng)], ["GETBIT", key, "2"],
        ["BITOP", rng.choice(["AND", "NOT", "XOR"]), other, key],
        ["WATCH", key], ["UNWATCH"], ["KEYS", rng.choice(["k1", "nomatch*", "g?ne"])],
        ["CONFIG", "GET", rng.choice(["maxclients", "timeout", "nosuch"])],
        ["CONFIG", "SET", "nosuch", "1"], ["HELLO", rng.choice(["4", "x"])], ["AUTH", "pw"],
        ["CLIENT", "GETNAME"], ["WAIT", "0", "0"], ["FLUSHDB"] if rng.random() < 0.1 else ["PING"],
        ["MOVE", key, "1"], ["COPY", key, other, "DB", "1"], ["GETRANGE", key],
        ["EXEC", "x"], ["ACL", "WHOAMI"], ["ACL", "USERS"],
    ]
    return rng.choice(choices)


def compare_run(binary, seed, resp3, durable=False):
    rng = random.Random(seed)
    directory = tempfile.mkdtemp(prefix="shoal-compat-") if durable else None
    if durable:  # every reply after its record's fdatasync: held replies keep their order
        shoal = harness.Server(binary, ["--dir", directory, "--sync", "always"])
    else:
        shoal = harness.Server(binary, env={"SHOAL_MODE": "memory"})
    reference = harness.RedisReference()
    clients = []
    try:
        clients = [Raw(shoal.port), Raw(reference.port)]
        if resp3:
            for client in clients:
                client.send(["HELLO", "3"])
                assert client.reply().startswith(b"%")
        step = 0
        while step < REQUESTS:
            # Pipelined bursts of up to 20 requests, sent before any reply is read (a first
            # write into a new database suspends its client meanwhile: order must hold).
            burst = []
            for _ in range(rng.randint(1, 20) if rng.random() < 0.3 else 1):
                inline = rng.random() < 0.05
                burst.append((inline, request(rng)))
            for client in clients:
                for inline, args in burst:
                    if inline and all(" " not in a and "\r" not in a and "\x00" not in a and a
                                      for a in args[1:]):
                        client.send_inline(" ".join(args))
                    else:
                        client.send(args)
            for inline, args in burst:
                replies = [client.reply() for client in clients]
                assert replies[0] == replies[1], (
                    "seed %d, %s, request %d %r: shoal %r, redis %r"
                    % (seed, "RESP3" if resp3 else "RESP2", step, args, replies[0], replies[1]))
                step += 1
    finally:
        for client in clients:
            client.close()
        reference.stop()
        shoal.stop()
        if directory is not None:
            shutil.rmtree(directory)


# With a password: what a client gets before and after AUTH, a transaction begun before
# it (EXEC then aborts, naming NOAUTH), wrong passwords and users, HELLO with AUTH.
AUTH_SEQUENCE = [
    ["GET", "k"], ["PING"], ["MULTI"], ["SET", "a", "1"], ["EXEC"], ["AUTH", "bad"],
    ["AUTH", "default", "bad"], ["AUTH", "nouser", "pw"], ["HELLO", "3", "AUTH", "default", "bad"],
    ["ACL", "WHOAMI"], ["AUTH", "pw"], ["ACL", "WHOAMI"], ["AUTH", "default", "pw"],
    ["SET", "a", "1"], ["GET", "a"], ["ACL", "USERS"], ["AUTH", "a", "b", "c"], ["EXEC", "x"],
]


# Connection and server commands with bad and good arguments: subcommand errors of
# CLIENT, CONFIG, COMMAND and ACL, arities, SELECT's range, SCAN's options, CONFIG SET.
ADMIN_SEQUENCE = [["CLIENT", "SETNAME", "a b"], ["CLIENT", "SETNAME", "ok"],
    ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", ""], ["CLIENT", "GETNAME"],
    ["CLIENT", "NO-EVICT", "on"], ["CLIENT", "NO-EVICT", "x"],
    ["CLIENT", "KILL", "1.2.3.4:5"], ["CLIENT", "KILL", "ID", "99999"], ["CLIENT", "FOO"],
    ["CLIENT"], ["CLIENT", "GETNAME"], ["HELLO", "3", "AUTH"], ["SELECT", "16"],
    ["SELECT", "-1"], ["DBSIZE", "x"], ["TIME", "x"], ["ECHO", "a", "b"],
    ["PING", "a", "b"], ["COMMAND", "COUNT", "x"], ["CONFIG", "GET"],
    ["CONFIG", "SET", "timeout"], ["CONFIG", "SET", "timeout", "x"],
    ["CONFIG", "SET", "timeout", "10"], ["CONFIG", "SET", "timeout", "1", "maxclients"],
    ["CONFIG", "GET", "timeout"],
    # CONFIG SET of several pairs is all or nothing; a name given twice is refused
    ["CONFIG", "SET", "timeout", "50", "maxclients", "abc"], ["CONFIG", "GET", "timeout"],
    ["CONFIG", "SET", "timeout", "50", "nosuch", "1"], ["CONFIG", "GET", "timeout"],
    ["CONFIG", "SET", "timeout", "50", "TIMEOUT", "60"], ["CONFIG", "GET", "timeout"],
    ["CONFIG", "SET", "timeout", "70", "hz", "20"], ["CONFIG", "GET", "timeout"],
    ["CONFIG", "SET", "timeout", "0", "hz", "10"],
    ["CONFIG", "RESETSTAT"], ["CONFIG", "FOO"], ["ACL", "FOO"], ["ACL", "LIST", "x"],
    ["CLIENT", "ID", "x"], ["COMMAND", "FOO"], ["SHUTDOWN", "BAD"], ["LASTSAVE", "x"],
    ["TYPE"], ["RENAME", "a"], ["SCAN", "x"], ["SCAN", "0", "COUNT", "0"],
    ["SCAN", "0", "TYPE"], ["SCAN", "0", "FOO", "1"], ["KEYS"], ["RANDOMKEY", "x"],
    ["FLUSHDB", "BAD"], ["FLUSHALL", "ASYNC", "SYNC"], ["EXPIRE", "k"], ["TTL"],
    ["PERSIST", "a", "b"], ["TOUCH"], ["MSET", "a"], ["MGET"],
    ["COMMAND", "GETKEYS", "GET", "a"], ["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"],
    ["COMMAND", "GETKEYS", "MSET", "a", "1", "b"], ["COMMAND", "GETKEYS", "MSET", "a"],
    ["COMMAND", "GETKEYS", "FOO", "a"], ["COMMAND", "GETKEYS", "PING"],
    ["COMMAND", "GETKEYS", "PING", "x"], ["COMMAND", "GETKEYS", "GET", "a", "b"],
    ["COMMAND", "GETKEYS", "BITOP", "AND", "d", "a", "b"], ["COMMAND", "GETKEYS", "DEL", "a", "b"],
    ["COMMAND", "GETKEYS", "MEMORY", "USAGE", "k"], ["COMMAND", "GETKEYS", "LCS", "a", "b"],
    ["COMMAND", "GETKEYS", "SET", "k", "v", "EX", "10"], ["COMMAND", "GETKEYS", "KEYS", "*"],
    ["COMMAND", "GETKEYS", "COPY", "a", "b"], ["COMMAND", "GETKEYS", "EXISTS", "a", "a"],
    ["COMMAND", "GETKEYS", "OBJECT", "ENCODING", "k"], ["COMMAND", "GETKEYS", "OBJECT", "HELP"],
    ["COMMAND", "GETKEYS", "OBJECT", "FOO", "k"], ["COMMAND", "GETKEYS", "MEMORY", "HELP"],
    ["COMMAND", "GETKEYS", "MEMORY", "USAGE", "k", "SAMPLES", "5"],
    ["COMMAND", "GETKEYS", "CONFIG", "NOSUCH"], ["COMMAND", "GETKEYS", "CONFIG", "GET"],
    ["COMMAND", "GETKEYS", "COMMAND", "NOSUCH"], ["COMMAND", "GETKEYS", "ACL", "WHOAMI"],
    ["COMMAND", "GETKEYS", "CLIENT", "GETNAME", "x"], ["COMMAND", "GETKEYS", "SLOWLOG", "FOO"]]


# ACL users: passwords by value and by hash, removal of passwords that are not there,
# malformed hashes, GETUSER of no user, DELUSER's count and its refusal of "default".
# (GETUSER of an existing user is not compared: Shoal adds the tenant and its quotas.)
PW1_HASH = "c592df4a86933b92addc9842402ddf198c638ea9be58916ee6e3734e1e3152f8"  # sha256("pw1")
ACL_SEQUENCE = [
    ["ACL", "SETUSER", "alice", "on", ">pw1", "~*", "&*", "+@all"],
    ["ACL", "SETUSER", "alice", "<nosuch"], ["ACL", "SETUSER", "alice", "#abc"],
    ["ACL", "SETUSER", "alice", "!" + "0" * 64], ["ACL", "SETUSER", "alice", "#" + "A" * 64],
    ["ACL", "SETUSER", "alice", "!" + PW1_HASH], ["AUTH", "alice", "pw1"],
    ["ACL", "SETUSER", "alice", "#" + PW1_HASH], ["AUTH", "alice", "pw1"],
    ["ACL", "SETUSER", "alice", "<pw1"], ["AUTH", "alice", "pw1"], ["AUTH", "default", "x"],
    ["ACL", "GETUSER", "nobody"], ["ACL", "GETUSER"], ["ACL", "DELUSER"],
    ["ACL", "DELUSER", "default"], ["ACL", "DELUSER", "alice", "default"],
    ["ACL", "DELUSER", "nobody"], ["ACL", "DELUSER", "alice", "nobody", "alice"],
    ["ACL", "GETUSER", "alice"], ["ACL", "USERS"], ["AUTH", "alice", "pw1"],
    # ACL DRYRUN's answers for an admin, and its errors.
    ["ACL", "DRYRUN", "default", "GET", "k"], ["ACL", "DRYRUN", "default", "CONFIG", "SET",
                                                 "timeout", "0"],
    ["ACL", "DRYRUN", "nobody", "GET", "k"], ["ACL", "DRYRUN", "default", "FOO"],
    ["ACL", "DRYRUN", "default", "GET"], ["ACL", "DRYRUN", "default", "CONFIG", "NOSUCH"],
    ["ACL", "DRYRUN", "default", "CONFIG"], ["ACL", "DRYRUN", "default", "CONFIG", "GET"],
    ["ACL", "DRYRUN", "default", "COMMAND", "NOSUCH"], ["ACL", "DRYRUN", "default"],
]


def replay(binary, sequence, server_args=(), unchecked=(), after=None):
    """Sends sequence over one connection to each server; the replies must be the same,
    but for requests whose command is in unchecked (replied to, not compared). after, if
    given, is called with the two servers' ports before they stop."""
    shoal = harness.Server(binary, list(server_args), env={"SHOAL_MODE": "memory"})
    reference = harness.RedisReference(extra_args=list(server_args))
    clients = []
    try:
        clients = [Raw(shoal.port), Raw(reference.port)]
        for step, args in enumerate(sequence):
            replies = []
            for client in clients:
                client.send(args)
                replies.append(client.reply())
            if args[0] in unchecked:
                continue
            assert replies[0] == replies[1], "request %d %r: shoal %r, redis %r" % (
                step, args, replies[0], replies[1])
        if after is not None:
            after(shoal.port, reference.port)
    finally:
        for client in clients:
            client.close()
        reference.stop()
        shoal.stop()


def test_admin_replies_as_redis(binary):
    replay(binary, ADMIN_SEQUENCE)


def test_acl_replies_as_redis(binary):
    replay(binary, ACL_SEQUENCE)


def test_slowlog_as_redis(binary):
    """With every command logged (threshold 0), the slow log's entries carry the same
    arguments as Redis's: cut long ones, folded long argument lists, AUTH redacted; and
    GET's count, LEN and RESET answer alike. Ids, times and durations are not compared."""
    import redis
    long_pairs = []
    for i in range(20):
        long_pairs += ["k%d" % i, "v"]
    sequence = [["SLOWLOG", "RESET"], ["SET", "a", "x" * 300], ["MSET"] + long_pairs,
                ["AUTH", "secret"], ["HELLO", "2", "AUTH", "default", "pw"], ["GET", "a"],
                ["SLOWLOG", "LEN"], ["SLOWLOG", "GET", "-2"],
                ["SLOWLOG", "GET", "x"], ["SLOWLOG", "FOO"], ["SLOWLOG", "GET", "1", "2"],
                ["SLOWLOG", "LEN", "x"], ["SLOWLOG"], ["ROLE"], ["ROLE", "x"]]

    def same_entries(shoal_port, reference_port):
        entries = []
        for port in (shoal_port, reference_port):
            with redis.Redis(host="127.0.0.1", port=port) as r:
                entries.append([entry["command"] for entry in r.slowlog_get(-1)])
        assert entries[0] == entries[1], entries
        assert len(entries[0]) == 5  # slowlog-max-len

    replay(binary, sequence, ["--slowlog-log-slower-than", "0", "--slowlog-max-len", "5"],
           unchecked=("HELLO",), after=same_entries)  # HELLO names the server


def ask(server, *args):
    """One request over a Raw connection; its reply's bytes."""
    server.send(list(args))
    return server.reply()


def bulk_names(reply):
    """The bulk strings of a reply, as a set (COMMAND LIST, ACL CAT)."""
    return set(re.findall(rb"\$\d+\r\n([^\r]*)\r\n", reply))


def test_categories_and_help_as_redis(binary):
    """COMMAND INFO gives every command Redis's ACL categories; ACL CAT lists Redis's
    categories and, for each, the same commands among those both servers have (Redis's
    subcommand entries such as config|set left out); ACL GENPASS and CAT refuse what Redis
    refuses; the HELP of each container starts and ends as Redis's."""
    import redis
    sequence = [["ACL", "CAT"], ["ACL", "CAT", "nosuch"], ["ACL", "CAT", "a", "b"],
                ["ACL", "GENPASS", "0"], ["ACL", "GENPASS", "4097"], ["ACL", "GENPASS", "x"],
                ["ACL", "GENPASS", "1", "2"], ["ACL", "GENPASS", "-5"]]

    def same_categories(shoal_port, reference_port):
        servers = [Raw(shoal_port), Raw(reference_port)]

        try:
            ours, theirs = (bulk_names(ask(r, "COMMAND", "LIST")) for r in servers)
            common = sorted(ours & theirs)
            assert len(common) >= 75, common
            for name in common:
                infos = [ask(r, "COMMAND", "INFO", name) for r in servers]
                # the categories are the only simple strings that start with '@'; Redis's
                # rows of subcommands (acl|cat ...) follow the command's own
                own = [re.split(rb"\$\d+\r\n[a-z-]+\|", info)[0] for info in infos]
                categories = [re.findall(rb"\+(@[a-z]+)\r\n", info) for info in own]
                assert categories[0] == categories[1] and categories[0], (name, categories)
            for category in sorted(bulk_names(ask(servers[1], "ACL", "CAT"))):
                members = [bulk_names(ask(r, "ACL", "CAT", category)) for r in servers]
                assert members[0] & theirs == members[1] & ours, category
            for container in ("CLIENT", "CONFIG", "ACL", "COMMAND", "MEMORY", "OBJECT",
                              "SLOWLOG"):
                helps = [ask(r, container, "HELP").split(b"\r\n") for r in servers]
                assert helps[0][1] == helps[1][1] and helps[0][-3:] == helps[1][-3:], helps
        finally:
            for r in servers:
                r.close()

    replay(binary, sequence, after=same_categories)


def test_command_names_as_redis(binary):
    """Command names are found in any case and only whole: for every command, COMMAND INFO
    of its name in upper and mixed case finds it, and with a NUL appended does not, on
    Shoal (Redis compares names with strcasecmp under a hash of the whole length, so there
    `psetex\\0` may or may not be found, depending on its hash seed); for the commands both
    servers have, the name with a byte added or removed is found by neither, and sent as a
    request gets the same unknown-command error from both."""

    def same_lookups(shoal_port, reference_port):
        servers = [Raw(shoal_port), Raw(reference_port)]

        try:
            ours, theirs = (bulk_names(ask(r, "COMMAND", "LIST")) for r in servers)
            count = int(ask(servers[0], "COMMAND", "COUNT")[1:])
            assert len(ours) == count and count >= 80, (count, ours)
            for name in sorted(ours):
                for variant in (name.upper(), name[:1].upper() + name[1:]):
                    info = ask(servers[0], "COMMAND", "INFO", variant)
                    assert info.startswith(b"*1\r\n*") and b"\r\n" + name + b"\r\n" in info, (
                        variant, info)
                for variant in (name + b"\x00", name.upper() + b"\x00"):
                    info = ask(servers[0], "COMMAND", "INFO", variant)
                    assert info == b"*1\r\n$-1\r\n", (variant, info)
            for name in sorted(ours & theirs):
                for variant in (name + b"x", name[:-1], b"x" + name):
                    if variant.lower() in ours | theirs:
                        continue
                    infos = [ask(r, "COMMAND", "INFO", variant) for r in servers]
                    assert infos[0] == infos[1] == b"*1\r\n$-1\r\n", (variant, infos)
                    errors = [ask(r, variant, "k") for r in servers]
                    assert errors[0] == errors[1] and errors[0].startswith(b"-ERR unknown"), (
                        variant, errors)
        finally:
            for r in servers:
                r.close()

    replay(binary, [["PING"]], after=same_lookups)


def test_command_info_as_redis(binary):
    """COMMAND INFO of every command both servers have: the same arity, key positions
    (containers 0 0 0) and the same flags among those that describe what a command does
    (write, readonly, denyoom, admin, fast, no_auth); Redis's other flags name its own
    machinery (scripts, loading, replicas)."""
    import redis
    described = {"write", "readonly", "denyoom", "admin", "fast", "no_auth"}

    def same_info(shoal_port, reference_port):
        with redis.Redis(host="127.0.0.1", port=shoal_port) as ours, \
                redis.Redis(host="127.0.0.1", port=reference_port) as theirs:
            mine, reference = ours.command(), theirs.command()
        common = sorted(set(mine) & set(reference))
        assert len(common) >= 80, common
        for name in common:
            a, b = mine[name], reference[name]
            for field in ("arity", "first_key_pos", "last_key_pos", "step_count"):
                assert a[field] == b[field], (name, field, a[field], b[field])
            flags = [set(entry["flags"]) & described for entry in (a, b)]
            assert flags[0] == flags[1], (name, flags)

    replay(binary, [["PING"]], after=same_info)


def test_monitor_as_redis(binary):
    """The lines MONITOR shows for the same requests are Redis's, but for the time and the
    client's port: quoting and escapes of binary arguments, the database number, AUTH's
    arguments and HELLO's AUTH pair redacted, errors after a command ran shown, refusals
    before it ran not."""
    sequence = [["SET", "plain", "v"], ["SET", 'q"uote', "back\\slash"],
                ["SET", "bin", "\x00\x01\x7f\xff\r\n\t\a\b"], ["SELECT", "3"],
                ["GET", "plain"], ["INCR", "plain"], ["GET"], ["AUTH", "secret"],
                ["HELLO", "2", "AUTH", "default", "pw"], ["ECHO", "caf\u00e9"], ["SELECT", "0"],
                ["MULTI"], ["SET", "a", "1"], ["EXEC"], ["DEL", "a", "bin"]]
    shoal = harness.Server(binary, [], env={"SHOAL_MODE": "memory"})
    reference = harness.RedisReference()
    sockets = []
    try:
        shown = []
        for port in (shoal.port, reference.port):
            watcher = socket.create_connection(("127.0.0.1", port))
            sockets.append(watcher)
            watcher.sendall(b"MONITOR\r\n")
            client = Raw(port)
            for args in sequence:
                client.send(args)
                client.reply()
            client.close()
            watcher.settimeout(0.5)
            data = b""
            while data.count(b"\r\n") < len(sequence):  # +OK, and all but the refused GET
                try:
                    chunk = watcher.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                data += chunk
            shown.append([re.sub(rb"^\+\d+\.\d{6} \[(\d+) 127\.0\.0\.1:\d+\]", rb"[\1]",
                                 line) for line in data.split(b"\r\n")])
        assert shown[0] == shown[1], shown
        assert len(shown[0]) == len(sequence) + 1, shown  # the last one empty
    finally:
        for s in sockets:
            s.close()
        reference.stop()
        shoal.stop()


def test_acl_log_as_redis(binary):
    """ACL LOG holds the same entries as Redis's after the same refusals: failed AUTHs
    (counted on one entry when repeated), admin commands and subcommands refused to a user
    without the right (a wholly admin container named by its subcommand, 'slowlog|get'),
    one refused inside MULTI; newest first. Every reply is compared too, NOPERM's texts
    among them. Ages and client lines are not compared."""
    import redis
    sequence = [["ACL", "LOG", "RESET"],
                ["ACL", "SETUSER", "u1", "on", ">p1", "+@all", "-@admin", "~*"],
                ["AUTH", "u1", "bad"], ["AUTH", "u1", "bad"], ["AUTH", "nouser", "x"],
                ["AUTH", "u1", "p1"], ["CONFIG", "SET", "maxclients", "100"], ["ACL", "LIST"],
                ["CLIENT", "KILL", "1.2.3.4:5"], ["SAVE"], ["MULTI"], ["BGSAVE"], ["DISCARD"],
                ["SLOWLOG", "GET"]]

    def same_log(shoal_port, reference_port):
        logs = []
        for port in (shoal_port, reference_port):
            with redis.Redis(host="127.0.0.1", port=port) as r:
                entries = r.acl_log()
                logs.append([(e["count"], e["reason"], e["context"], e["object"], e["username"])
                             for e in entries])
                assert all(e["age-seconds"] >= 0 for e in entries), entries
                assert len(r.acl_log(2)) == 2 and r.execute_command("ACL", "LOG", "-1") == []
        assert logs[0] == logs[1], logs
        assert len(logs[0]) == 8, logs
        for port in (shoal_port, reference_port):  # acllog-max-len drops the oldest
            with redis.Redis(host="127.0.0.1", port=port) as r:
                assert r.config_set("acllog-max-len", 3)
                try:
                    r.execute_command("AUTH", "nobody", "x")  # a new entry: trims
                except redis.ResponseError:
                    pass
                got = [e["object"] for e in r.acl_log()]
                assert got == ["AUTH", "slowlog|get", "bgsave"], (port == shoal_port, got)
                assert r.execute_command("ACL", "LOG", "RESET") and r.acl_log() == []

    replay(binary, sequence,
           after=same_log)


def test_lcs_as_redis(binary):
    """LCS over random strings of a small alphabet (so that matches and ties abound), with
    every option mix, in RESP2 and RESP3: the same bytes as Redis, including the errors and
    the transient-memory limit (proto-max-bulk-len at its 1 MiB minimum)."""
    rng = random.Random(7)
    sequence = [["MSET", "big1", "x" * 600, "big2", "y" * 600], ["LCS", "big1", "big2"],
                ["LCS", "a"], ["LCS", "a", "b", "LEN", "IDX"], ["LCS", "a", "b", "FOO"],
                ["LCS", "a", "b", "MINMATCHLEN"], ["LCS", "a", "b", "MINMATCHLEN", "x"],
                ["LCS", "none1", "none2", "IDX"], ["LCS", "none1", "none2"]]
    for round_number in range(400):
        if round_number == 200:
            sequence.append(["HELLO", "3"])  # the servers' names and versions differ
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 30)))
        options = rng.choice([[], ["LEN"], ["IDX"], ["IDX", "WITHMATCHLEN"],
                              ["IDX", "MINMATCHLEN", str(rng.randint(-1, 4))],
                              ["WITHMATCHLEN", "IDX", "MINMATCHLEN", "2"]])
        sequence += [["MSET", "a", a, "b", b], ["LCS", "a", "b"] + options]
    replay(binary, sequence, ["--proto-max-bulk-len", "1mb"], unchecked=("HELLO",))


def test_errorstats_as_redis(binary):
    """After the same erring requests, INFO counts the same error replies by code."""
    import redis
    sequence = [["GET"], ["FOO"], ["SET", "a", "1", "EX", "x"], ["SET", "s", "abc"],
                ["INCR", "s"], ["SELECT", "100"], ["MULTI"], ["FOO"], ["EXEC"], ["AUTH", "x"],
                ["CONFIG", "SET", "nosuch", "1"], ["GETEX", "a", "EX", "0"],
                ["BITOP", "FOO", "d", "a"], ["PING"]]

    def same_counts(shoal_port, reference_port):
        stats = []
        for port in (shoal_port, reference_port):
            with redis.Redis(host="127.0.0.1", port=port) as r:
                info = r.info("everything")
                stats.append(({k: v for k, v in info.items() if k.startswith("errorstat_")},
                              info["total_error_replies"]))
        assert stats[0] == stats[1], stats
        assert stats[0][1] > 5
        with redis.Redis(host="127.0.0.1", port=shoal_port) as r:
            r.config_resetstat()
            info = r.info("everything")
            assert info["total_error_replies"] == 0
            assert not any(k.startswith("errorstat_") for k in info), info

    replay(binary, sequence, unchecked=[request[0] for request in sequence], after=same_counts)


def test_auth_replies_as_redis(binary):
    replay(binary, AUTH_SEQUENCE, ["--requirepass", "pw"])


# WATCH against another client's commands: which of them break the watch (a write, even
# of the same value) and which leave it (reads, refused or no-op writes). Each scenario:
# setup by B, WATCH by A, B's requests, then A's MULTI/SET/EXEC.
WATCH_SCENARIOS = [
    [["SET", "k", "v"]], [["SETBIT", "b", "0", "1"]], [["SETBIT", "b", "7", "0"]],
    [["DEL", "missing"]], [["FLUSHDB"]], [["EXPIRE", "missing", "100"]], [["PERSIST", "k"]],
    [["EXPIRE", "t", "500", "NX"]], [["GETEX", "k"]], [["GETEX", "k", "PERSIST"]],
    [["APPEND", "k", ""]], [["SETRANGE", "k", "0", ""]], [["INCRBY", "n", "0"]],
    [["MSETNX", "k", "x"]], [["SET", "k", "x", "NX"]], [["COPY", "b", "k"]], [["GET", "k"]],
    [["SELECT", "1"], ["SET", "k", "other"]], [["DEL", "k"], ["SET", "k", "v"]],
    [["RENAME", "k", "k2"]], [["RENAME", "missing", "x"]], [["SETNX", "k", "x"]],
    [["EXPIRE", "k", "0"]], [["GETDEL", "missing"]], [["BITOP", "NOT", "missing", "missing"]],
    [["TOUCH", "k"]], [["PEXPIRE", "t", "500000", "GT"]], [["PEXPIRE", "t", "2000000", "GT"]],
    [["SET", "n", "5", "KEEPTTL"]],
]


def test_watch_as_redis(binary):
    shoal = harness.Server(binary, env={"SHOAL_MODE": "memory"})
    reference = harness.RedisReference()
    try:
        for scenario in WATCH_SCENARIOS:
            for watched in ("k", "missing", "b", "t"):
                outcomes = []
                for port in (shoal.port, reference.port):
                    a, b = Raw(port), Raw(port)
                    replies = []
                    for args in (["FLUSHALL"], ["SET", "k", "v"], ["SET", "b", "\x01"],
                                 ["SET", "n", "5"], ["SET", "t", "x", "EX", "1000"]):
                        b.send(args)
                        b.reply()
                    a.send(["WATCH", watched])
                    replies.append(a.reply())
                    for args in scenario:
                        b.send(args)
                        replies.append(b.reply())
                    for args in (["MULTI"], ["SET", "result", "1"], ["EXEC"]):
                        a.send(args)
                        replies.append(a.reply())
                    outcomes.append(replies)
                    a.close()
                    b.close()
                assert outcomes[0] == outcomes[1], "watching %r, %r: shoal %r, redis %r" % (
                    watched, scenario, outcomes[0], outcomes[1])
    finally:
        reference.stop()
        shoal.stop()


# Malformed and odd frames, each on a fresh connection: the bytes that come back before
# the server closes it (or answers the ECHO sent after the frame) must be Redis's.
# (Shoal's max multibulk length, 1M elements by default, is its own limit and left out.)
FRAMES = [b"*-5\r\nPING\r\n", b"*abc\r\n", b"*1\r\n$-3\r\n", b"*1\r\n$abc\r\n",
          b"*1\r\nfoo\r\n", b"*99999999999\r\n", b"*1\r\n$600000000\r\n",
          b"*2\r\n$4\r\nPING\r\n:5\r\n", b"*0\r\nPING\r\n", b"*1\r\n$4\r\nPINGxx\r\n",
          b"\r\n\r\nPING\r\n", b"*1\r\n$536870913\r\n", b"+PING\r\n",
          b"*1\r\n$4\r\nPING\r\n*-1\r\nPING\r\n", b'ECHO "a b"\r\n', b'ECHO "open\r\n',
          b"ECHO 'it\\'s'\r\n", b'ECHO "\\x41"\r\n',
          # CLIENT REPLY: replies dropped and resumed, inside and around transactions.
          b"CLIENT REPLY SKIP\r\nPING\r\nPING a\r\nCLIENT REPLY OFF\r\nSET a 1\r\nGET a\r\n"
          b"FOO\r\nCLIENT REPLY ON\r\nGET a\r\nCLIENT REPLY x\r\nCLIENT REPLY SKIP\r\n"
          b"CLIENT REPLY SKIP\r\nPING b\r\nPING c\r\nMULTI\r\nCLIENT REPLY SKIP\r\nEXEC\r\n"
          b"CLIENT REPLY SKIP\r\nMULTI\r\nPING\r\nEXEC\r\n"]


def answer(port, frame):
    """Everything the server sends for frame, then ECHO endmark, until the connection
    closes or the echo comes back (bounded by the socket timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(frame + b"ECHO endmark\r\n")
        data = b""
        for _ in range(1000):
            chunk = sock.recv(65536)
            if not chunk:
                return data + b"<closed>"
            data += chunk
            if data.endswith(b"$7\r\nendmark\r\n"):
                return data
        return data


def test_protocol_errors_as_redis(binary):
    shoal = harness.Server(binary, env={"SHOAL_MODE": "memory"})
    reference = harness.RedisReference()
    try:
        for frame in FRAMES:
            ours, theirs = answer(shoal.port, frame), answer(reference.port, frame)
            assert ours == theirs, "frame %r: shoal %r, redis %r" % (frame, ours, theirs)
    finally:
        reference.stop()
        shoal.stop()


# Damaged streams: requests of several forms, then bytes changed, inserted, removed or cut
# off, then ECHO endmark; each stream on a fresh connection whose write side is shut after
# it, so both servers run what they can, answer, and close. The replies and then the
# keys' state must be Redis's (transactions, SELECT and CLIENT REPLY among them: what a
# protocol error or an empty request does to a pending SKIP). Left out, as they differ on
# purpose (docs/PROTOCOL.md): NUL bytes outside bulk payloads (Redis stops reading a line
# at a NUL and waits), expiry
# (a short TTL made by a damaged number would race the comparison) and replies so large
# that Redis drops their unsent part when it sees the end of input.
DAMAGE_BYTES = b"*$:+-\r\n 0123456789\"'\\xaZ\t"
DAMAGED_STREAMS = 1500


def multibulk(args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def damaged_request(rng, password):
    word = bytes(rng.choice(b"abcxyz01 \r\n\"'\\") for _ in range(rng.randint(0, 8)))
    number = rng.choice([b"0", b"-0", b"007", b"-1", b"7", b"+5", b" 5", b"1e3", b"0x10",
                         b"99999999999999999999"])
    return rng.choice([
        multibulk([b"PING"]), multibulk([b"ECHO", word]), multibulk([b"SET", b"k", word]),
        multibulk([b"SET", b"k", word, rng.choice([b"NX", b"XX", b"GET", b"KEEPTTL"])]),
        multibulk([b"GET", b"k"]), multibulk([b"STRLEN", b"k"]), multibulk([b"DEL", b"k", b"n"]),
        multibulk([b"INCRBY", b"n", number]), multibulk([b"GETRANGE", b"k", number, number]),
        multibulk([b"SETRANGE", b"k", rng.choice([b"0", b"3", b"-0", b"x"]), word]),
        multibulk([b"APPEND", b"k", word]), multibulk([b"MGET", b"k", b"n", word]),
        multibulk([b"EXISTS", word]), multibulk([b"BITCOUNT", b"k", number, number]),
        multibulk([b"MULTI"]), multibulk([b"EXEC"]), multibulk([b"DISCARD"]), b"MULTI\r\n",
        multibulk([b"SELECT", rng.choice([b"0", b"1", b"-0", b"x"])]), multibulk([b"TYPE", b"k"]),
        multibulk([b"CLIENT", b"REPLY", rng.choice([b"ON", b"OFF", b"SKIP"])]),
        multibulk([b"WATCH", b"k"]), multibulk([b"RENAME", b"k", b"n"]),
        multibulk([b"INCRBYFLOAT", b"n", number]), multibulk([b"MSET", b"k", word, b"n", number]),
        b"PING\r\n", b"ECHO world\n", b'ECHO "a\\x41 b"\r\n', b"ECHO 'x\\'y'\r\n",
        b'SET k "a\\x4" x\r\n', b"GET k\r\n", b"*0\r\n", b"*-1\r\n", b"\r\n", b"  \n",
        multibulk([b"AUTH", rng.choice([password or b"x", b"wrong"])]),
        multibulk([b"CONFIG", rng.choice([b"GET", b"NOSUCH"])]), multibulk([b"ECHO", b"x" * 20000]),
    ])


def damaged(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        at = rng.randrange(len(data))
        kind = rng.randrange(4)
        if kind == 0:
            data[at] = rng.choice(DAMAGE_BYTES)
        elif kind == 1:
            data.insert(at, rng.choice(DAMAGE_BYTES))
        elif kind == 2:
            del data[at]
        else:
            del data[at:]
    return bytes(data)


def send_in_pieces(sock, stream, rng):
    """Sends stream in pieces of 1-64 bytes, each its own segment, with a pause after each
    so that the server reads them apart: a request, a header or a bulk arrives cut at any
    byte. Stops early when the server has closed."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pos = 0
    while pos < len(stream):
        size = rng.randint(1, 64)
        sock.sendall(stream[pos:pos + size])
        pos += size
        time.sleep(0.0003)


def until_closed(port, stream, pieces=None):
    """Everything the server sends for stream, sent whole (or, with a random generator as
    pieces, in pieces) and then the write side shut, until it closes the connection
    (bounded by the socket timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            if pieces is None:
                sock.sendall(stream)
            else:
                send_in_pieces(sock, stream, pieces)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed already, after a protocol error: its reply is still to be read
        data = b""
        for _ in range(10000):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return data  # it closed with input unread; what it sent came first
            if not chunk:
                return data
            data += chunk
        return data


HELLO_END = b"$7\r\nmodules\r\n*0\r\n"  # the last field of HELLO's reply


def damaged_run(binary, seed, streams, password=None, resp3=False, durable=False,
                pieces=False):
    """resp3: each stream starts with HELLO 3 (whose own reply, naming the server, is left
    out); durable: shoal-server under sync always, every reply after its record's sync;
    pieces: each stream sent to both servers in the same random pieces."""
    extra = ["--requirepass", password.decode()] if password else []
    directory = tempfile.mkdtemp(prefix="shoal-damaged-") if durable else None
    if durable:
        shoal = harness.Server(binary, extra + ["--dir", directory, "--sync", "always"])
    else:
        shoal = harness.Server(binary, extra, env={"SHOAL_MODE": "memory"})
    reference = harness.RedisReference(extra_args=extra)
    rng = random.Random(seed)
    probe = (multibulk([b"AUTH", password]) if password else b"") + multibulk([b"MGET", b"k", b"n"])
    hello = multibulk([b"HELLO", b"3"]) if resp3 else b""
    try:
        for _ in range(streams):
            stream = b"".join(damaged_request(rng, password) for _ in range(rng.randint(1, 5)))
            stream = hello + damaged(rng, stream) + multibulk([b"ECHO", b"endmark"])
            cut = rng.getrandbits(32) if pieces else None
            ours = until_closed(shoal.port, stream, random.Random(cut) if pieces else None)
            theirs = until_closed(reference.port, stream, random.Random(cut) if pieces else None)
            if resp3:
                ours, theirs = (reply[reply.index(HELLO_END) + len(HELLO_END):]
                                for reply in (ours, theirs))
            assert ours == theirs, "stream %r: shoal %r, redis %r" % (stream, ours, theirs)
            ours, theirs = until_closed(shoal.port, probe), until_closed(reference.port, probe)
            assert ours == theirs, "after %r: shoal %r, redis %r" % (stream, ours, theirs)
    finally:
        reference.stop()
        shoal.stop()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


def test_damaged_streams_as_redis(binary):
    damaged_run(binary, 17, DAMAGED_STREAMS)


def test_damaged_streams_resp3_durable_as_redis(binary):
    """The same after HELLO 3, with shoal-server durable: RESP3's reply forms, and replies
    held for the log's sync still in order around protocol errors and the end of input."""
    damaged_run(binary, 19, DAMAGED_STREAMS // 2, resp3=True, durable=True)


def test_damaged_streams_before_auth_as_redis(binary):
    """With a password set each stream starts unauthenticated: NOAUTH, and Redis's tighter
    limits on a stranger's request (10 arguments, 16 KiB bulks), until its AUTH."""
    damaged_run(binary, 18, DAMAGED_STREAMS // 2, password=b"pw")


def test_damaged_streams_in_pieces_as_redis(binary):
    """The same streams cut into pieces that the servers read apart, both servers getting
    the same cuts: what a request is must not depend on how its bytes arrive."""
    damaged_run(binary, 20, DAMAGED_STREAMS // 10, pieces=True)


def test_resp2_replies_as_redis(binary):
    compare_run(binary, 11, resp3=False)


def test_resp3_replies_as_redis(binary):
    compare_run(binary, 12, resp3=True)


def test_durable_replies_as_redis(binary):
    compare_run(binary, 13, resp3=False, durable=True)


if __name__ == "__main__":
    harness.run([test_resp2_replies_as_redis, test_resp3_replies_as_redis,
                 test_durable_replies_as_redis, test_watch_as_redis,
                 test_auth_replies_as_redis, test_admin_replies_as_redis, test_acl_replies_as_redis,
                 test_slowlog_as_redis, test_categories_and_help_as_redis, test_monitor_as_redis,
                 test_command_names_as_redis, test_command_info_as_redis,
                 test_acl_log_as_redis,
                 test_lcs_as_redis, test_errorstats_as_redis,
                 test_protocol_errors_as_redis, test_damaged_streams_as_redis,
                 test_damaged_streams_before_auth_as_redis,
                 test_damaged_streams_resp3_durable_as_redis,
                 test_damaged_streams_in_pieces_as_redis])
