"""Tenant isolation: two users acting as two tenants each see only their own keys through
every key-reading command, cannot flush each other, and meet their quota as an -OOM error
that changes nothing. Also AUTH, NOAUTH, NOPERM and ACL commands."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import redis  # noqa: E402

CONFIG = """
requirepass adminpass
user alice on >alicepass tenant=acme
user bob on >bobpass tenant=globex max-keys=5
"""


def expect_error(function, text):
    try:
        function()
    except redis.ResponseError as error:
        assert text in str(error), "expected %r in %r" % (text, str(error))
        return
    raise AssertionError("expected an error containing %r" % text)


def test_isolation(binary):
    server = harness.Server(binary, config_text=CONFIG)
    try:
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            anonymous.get("x")
            raise AssertionError("NOAUTH expected")
        except redis.AuthenticationError:
            pass
        alice = redis.Redis(host="127.0.0.1", port=server.port, username="alice", password="alicepass")
        bob = redis.Redis(host="127.0.0.1", port=server.port, username="bob", password="bobpass")
        admin = redis.Redis(host="127.0.0.1", port=server.port, password="adminpass")
        assert alice.acl_whoami() == "alice" and admin.acl_whoami() == "default"
        alice.mset({"shared": "alice", "a1": "1", "a2": "2"})
        bob.set("shared", "bob")
        # Every key-reading command sees only the caller's tenant.
        assert alice.get("shared") == b"alice" and bob.get("shared") == b"bob"
        assert admin.get("shared") is None
        assert bob.get("a1") is None and bob.mget("a1", "a2") == [None, None]
        assert bob.exists("a1", "a2") == 0 and bob.type("a1") == b"none"
        assert bob.strlen("a1") == 0 and bob.ttl("a1") == -2
        assert bob.getrange("a1", 0, -1) == b""
        assert sorted(bob.keys("*")) == [b"shared"]
        assert sorted(bob.scan_iter()) == [b"shared"]
        assert bob.dbsize() == 1 and alice.dbsize() == 3
        assert bob.randomkey() == b"shared"
        assert bob.delete("a1") == 0 and alice.get("a1") == b"1"
        assert bob.copy("a1", "mine") is False and bob.move("a1", 1) is False
        expect_error(lambda: bob.rename("a1", "stolen"), "no such key")
        assert bob.info("keyspace")["db0"]["keys"] == 1
        # Cursors do not cross tenants.
        cursor, _ = alice.scan(0, count=1)
        assert cursor != 0
        expect_error(lambda: bob.scan(cursor), "invalid cursor")
        # Flushes stay inside the tenant, also inside a transaction.
        pipe = bob.pipeline(transaction=True)
        pipe.flushall().flushdb().dbsize()
        assert pipe.execute() == [True, True, 0] and bob.dbsize() == 0
        assert alice.dbsize() == 3 and alice.get("shared") == b"alice"
        bob.set("shared", "bob")
        assert bob.flushall() and bob.dbsize() == 0
        assert alice.dbsize() == 3 and alice.get("shared") == b"alice"
        # Quota: bob's tenant has max-keys=5.
        for i in range(5):
            bob.set("k%d" % i, "v")
        expect_error(lambda: bob.set("k5", "v"), "OOM")
        assert bob.exists("k5") == 0 and bob.dbsize() == 5
        expect_error(lambda: bob.mset({"k6": "v", "k7": "v"}), "OOM")
        assert bob.exists("k6", "k7") == 0
        assert bob.set("k0", "overwrite is fine")
        # Admin-only commands.
        expect_error(lambda: bob.config_set("timeout", 5), "no permissions")
        expect_error(lambda: bob.execute_command("ACL", "LIST"), "no permissions")
        expect_error(lambda: bob.execute_command("SHUTDOWN"), "no permissions")
        # Server-wide statistics are an admin's to reset; CONFIG GET is anyone's.
        assert int(admin.info("stats")["total_commands_processed"]) > 0
        expect_error(lambda: bob.config_resetstat(), "'config|resetstat' command")
        assert int(admin.info("stats")["total_commands_processed"]) > 0
        assert bob.config_get("timeout") == {"timeout": "0"}
        # Refused when queued, as Redis refuses what ACLs forbid: EXEC aborts.
        pipe = bob.pipeline(transaction=True)
        pipe.set("queued", "1").config_set("timeout", 5)
        expect_error(pipe.execute, "no permissions")  # redis-py names it, not EXECABORT
        assert bob.exists("queued") == 0
        # ACL DRYRUN (admin only) answers by the same rule, without running anything.
        dryrun = lambda *args: admin.execute_command("ACL", "DRYRUN", *args)  # noqa: E731
        assert dryrun("bob", "SET", "x", "1") == b"OK" and bob.exists("x") == 0
        for request, name in ((["CONFIG", "SET", "timeout", "5"], "config|set"),
                              (["ACL", "LIST"], "acl|list"), (["SHUTDOWN"], "shutdown"),
                              (["CLIENT", "KILL", "1.2.3.4:5"], "client|kill")):
            assert dryrun("bob", *request) == (
                b"This user has no permissions to run the '%s' command" % name.encode())
            assert dryrun("default", *request) == b"OK"
        assert dryrun("bob", "ACL", "WHOAMI") == b"OK"
        assert dryrun("bob", "CONFIG", "GET", "timeout") == b"OK"
        expect_error(lambda: dryrun("nobody", "GET", "k"), "User 'nobody' not found")
        expect_error(lambda: bob.execute_command("ACL", "DRYRUN", "bob", "GET", "k"),
                     "'acl|dryrun' command")
        users = admin.execute_command("ACL", "LIST")
        assert any(b"tenant=globex" in u and b"max-keys=5" in u for u in users), users
        assert admin.execute_command("ACL", "SETUSER", "carol", "on", ">c", "tenant=acme") == b"OK"
        carol = redis.Redis(host="127.0.0.1", port=server.port, username="carol", password="c")
        assert carol.get("shared") == b"alice"  # same tenant as alice
        expect_error(lambda: redis.Redis(host="127.0.0.1", port=server.port, username="alice",
                                         password="wrong").ping(), "invalid username-password")
        assert "tenant_acme" in str(admin.execute_command("INFO", "tenants"))
        assert "tenant_acme" not in str(bob.execute_command("INFO", "tenants"))
    finally:
        server.stop()


def test_acl_users(binary):
    """Passwords are kept and shown as SHA-256; ACL GETUSER tells a user's rules and tenant;
    ACL DELUSER removes users and disconnects their clients, the caller after its reply."""
    import hashlib
    server = harness.Server(binary, config_text=CONFIG)
    try:
        admin = redis.Redis(host="127.0.0.1", port=server.port, password="adminpass")
        digest = hashlib.sha256(b"alicepass").hexdigest()
        users = admin.execute_command("ACL", "LIST")
        line = [u for u in users if u.startswith(b"user alice ")][0]
        assert ("#" + digest).encode() in line and b"alicepass" not in line, line
        alice_info = admin.acl_getuser("alice")
        assert alice_info["passwords"] == [digest], alice_info
        assert alice_info["enabled"] and alice_info["tenant"] == b"acme"
        bob_info = admin.execute_command("ACL", "GETUSER", "bob")
        fields = dict(zip(bob_info[::2], bob_info[1::2]))
        assert fields[b"max-keys"] == 5 and fields[b"max-ops"] == b"unlimited", fields
        assert admin.acl_getuser("nobody") is None
        # A password given by its hash authenticates with the password itself.
        dave_hash = hashlib.sha256(b"davepass").hexdigest()
        assert admin.execute_command("ACL", "SETUSER", "dave", "on", "#" + dave_hash,
                                     "tenant=acme", "+@all") == b"OK"
        dave = redis.Redis(host="127.0.0.1", port=server.port, username="dave",
                           password="davepass")
        assert dave.acl_whoami() == "dave"
        # Passwords of any length (only their hash is kept), removed by value too.
        long_password = "p" * 5000
        assert admin.execute_command("ACL", "SETUSER", "dave", ">" + long_password) == b"OK"
        assert redis.Redis(host="127.0.0.1", port=server.port, username="dave",
                           password=long_password).acl_whoami() == "dave"
        assert admin.execute_command("ACL", "SETUSER", "dave", "<" + long_password) == b"OK"
        expect_error(lambda: redis.Redis(host="127.0.0.1", port=server.port, username="dave",
                                         password=long_password).ping(), "invalid username")
        expect_error(lambda: admin.execute_command("ACL", "SETUSER", "dave", "<nosuch"),
                     "does not exist")
        expect_error(lambda: admin.execute_command("ACL", "DELUSER", "default", "bob"),
                     "cannot be removed")
        assert b"bob" in admin.execute_command("ACL", "USERS")
        # Deleting bob disconnects bob's connection; deleting yourself, yours after the reply.
        import socket

        def raw_auth(user, password):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"AUTH %s %s\r\n" % (user, password))
            assert sock.recv(64) == b"+OK\r\n"
            return sock

        def closed(sock):
            """Reads what is left until the server closes (bounded by the timeout)."""
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return data
                data += chunk

        bob = raw_auth(b"bob", b"bobpass")
        assert admin.execute_command("ACL", "DELUSER", "bob", "nobody") == 1
        assert closed(bob) == b""
        bob.close()
        dave_raw = raw_auth(b"dave", b"davepass")
        dave_raw.sendall(b"ACL DELUSER dave\r\n")
        assert closed(dave_raw) == b":1\r\n"  # the reply, then the close
        dave_raw.close()
        assert sorted(admin.execute_command("ACL", "USERS")) == [b"alice", b"default"]
        expect_error(lambda: redis.Redis(host="127.0.0.1", port=server.port, username="bob",
                                         password="bobpass").ping(), "invalid username-password")
        # Inside MULTI, refused (EXEC would have to run again around a change made).
        pipe = admin.pipeline(transaction=True)
        pipe.execute_command("ACL", "DELUSER", "alice")
        try:
            pipe.execute()
            raise AssertionError("ACL DELUSER inside MULTI should be refused")
        except redis.ResponseError as error:
            assert "not allowed" in str(error), error
        assert b"alice" in admin.execute_command("ACL", "USERS")
        assert server.alive()
    finally:
        server.stop()


def test_acl_cat_and_genpass(binary):
    """ACL CAT, GENPASS and HELP answer any user, as in Redis; the rest of ACL stays the
    admin's. GENPASS gives fresh hex of the asked number of bits, rounded up to a digit."""
    import re
    server = harness.Server(binary, config_text=CONFIG)
    try:
        alice = redis.Redis(host="127.0.0.1", port=server.port, username="alice",
                            password="alicepass")
        assert b"get" in alice.execute_command("ACL", "CAT", "string")
        assert b"dangerous" in alice.execute_command("ACL", "CAT")
        assert alice.execute_command("ACL", "HELP")[0].startswith(b"ACL <subcommand>")
        passwords = set()
        for bits, digits in ((None, 64), (1, 1), (4, 1), (5, 2), (255, 64), (4096, 1024)):
            args = ["ACL", "GENPASS"] + ([] if bits is None else [str(bits)])
            password = alice.execute_command(*args)
            assert re.fullmatch(rb"[0-9a-f]{%d}" % digits, password), (bits, password)
            if digits >= 64:
                passwords.add(password)
        assert len(passwords) == 3  # 256 bits or more: never equal by chance
        try:
            alice.execute_command("MONITOR")  # it would show every tenant's commands
            raise AssertionError("MONITOR should need the admin right")
        except redis.ResponseError as error:
            assert "no permissions to run the 'monitor' command" in str(error), error
        try:
            alice.execute_command("ACL", "LIST")
            raise AssertionError("ACL LIST should need the admin right")
        except redis.ResponseError as error:
            assert str(error).startswith("this user has no permissions"), error
    finally:
        server.stop()


if __name__ == "__main__":
    harness.run([test_isolation, test_acl_users, test_acl_cat_and_genpass])
