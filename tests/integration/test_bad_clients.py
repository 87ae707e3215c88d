"""Hostile and broken clients: malformed and truncated frames, negative and huge lengths,
1 GB without a newline (cut off by the query limits), 10,000 connections opened and
dropped in bounded batches, and a client that never reads its replies (cut off by the
output buffer limit). The server must keep serving others and its RSS, read from /proc,
must stay bounded."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import redis  # noqa: E402

RSS_LIMIT_KB = 512 * 1024


def exchange(port, payload):
    """Sends payload, returns what the server answered before closing (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        for _ in range(100):
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        return data


def check_alive(server):
    r = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=30)
    assert r.ping()
    assert r.set("alive", "yes") and r.get("alive") == b"yes"


def test_bad_clients(binary):
    server = harness.Server(binary, ["--client-output-buffer-limit", "normal 32mb 16mb 1",
                                     "--maxclients", "20000"])
    try:
        cases = [
            (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*1\r\n+PING\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n"),
            (b"*1\r\n$-1\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
            (b"*1\r\n$99999999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
            (b"*99999999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
            (b'SET "a\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        ]
        for payload, reply in cases:
            assert exchange(server.port, payload) == reply, payload
        # Negative counts are empty requests; what follows still runs.
        assert exchange(server.port, b"*-1\r\nPING\r\nQUIT\r\n") == b"+PONG\r\n+OK\r\n"
        # Truncated frames: the client goes away mid-request.
        for payload in (b"*3\r\n$3\r\nSET\r\n$1\r\na", b"*2\r\n$3", b"*1000\r\n", b"$5\r\nab"):
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(payload)
        check_alive(server)

        # 1 GB without a newline, sent in bounded chunks until the server hangs up.
        chunk = b"A" * (1024 * 1024)
        sent = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            try:
                while sent < 1024 * len(chunk):
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
        assert sent < 1024 * len(chunk), "the server accepted 1 GB without a newline"
        # The same with a multibulk header line that never ends.
        sent = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            try:
                s.sendall(b"*1\r\n$")
                while sent < 1024 * len(chunk):
                    s.sendall(b"9" * len(chunk))
                    sent += len(chunk)
            except OSError:
                pass
        assert sent < 1024 * len(chunk)
        check_alive(server)
        assert server.rss_kb() < RSS_LIMIT_KB, server.rss_kb()

        # 10,000 connections, opened and dropped in batches of 500.
        for batch in range(20):
            sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(500)]
            if batch % 2 == 0:
                for s in sockets:
                    s.sendall(b"PING\r\n")
            for s in sockets:
                s.close()
        check_alive(server)

        # A client that never reads: replies of a 1 MiB value pile up past the output limit.
        # Whether the client's own send fails says nothing: on loopback the kernel buffers
        # megabytes of requests (tcp_rmem up to 32 MiB), so a client can finish writing
        # long before the server's loop runs. The test therefore sends a fixed number of
        # requests whose replies must exceed the limit whatever the kernel absorbs, then
        # asks the server (on another connection) until that client is gone.
        r = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=30)
        r.set("big", b"x" * (1024 * 1024))
        before = r.info("stats")["client_output_buffer_limit_disconnections"]
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
        slow.settimeout(10)
        slow.connect(("127.0.0.1", server.port))
        address = "%s:%d" % slow.getsockname()
        # 128 GETs = 128 MiB of replies: four times the 32 MiB hard limit, far beyond the
        # few MiB the two sockets' kernel buffers can hold. The requests are 3.7 KB, so
        # sendall cannot block on a server that stops reading.
        slow.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 128)
        def disconnected():
            stats = r.info("stats")["client_output_buffer_limit_disconnections"]
            listed = [client["addr"] for client in r.client_list()]
            return stats == before + 1 and address not in listed
        gone = False
        for _ in range(1200):  # a bounded wait for the event; nothing is asserted on time
            if disconnected():
                gone = True
                break
            time.sleep(0.05)
        assert gone, "the slow reader %s was never disconnected: %r" % (address, r.client_list())
        assert ("addr=%s: output buffer limit" % address) in server.log_text()
        # From the client's side the connection is dead too: the server answers data sent
        # to a closed socket with a reset, so a later send fails (bounded).
        reset = False
        for _ in range(100):
            try:
                slow.sendall(b"PING\r\n")
            except OSError:
                reset = True
                break
            time.sleep(0.01)
        slow.close()
        assert reset, "the slow reader's connection still accepts data"
        check_alive(server)
        assert server.rss_kb() < RSS_LIMIT_KB, server.rss_kb()
    finally:
        server.stop()


if __name__ == "__main__":
    harness.run([test_bad_clients])
