"""Starts and stops a real shoal-server for the integration tests.

A test picks a free port on 127.0.0.1, starts the server binary given on its command
line, waits (bounded) until it answers PING, and stops it by PID with SIGTERM, checking
that it exits 0. RSS is read from /proc, never inferred from time.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, extra_args=(), config_text=None, env=None):
        self.log = tempfile.NamedTemporaryFile(prefix="shoal-server-", suffix=".log", delete=False)
        self.config = None
        if config_text is not None:
            self.config = tempfile.NamedTemporaryFile("w", prefix="shoal-", suffix=".conf", delete=False)
            self.config.write(config_text)
            self.config.close()
        full_env = dict(os.environ)
        full_env.pop("SHOAL_PORT", None)
        if env:
            full_env.update(env)
        # The free port is only free when it was picked: another test running in parallel
        # can take it before the server binds. The server then refuses to start ("Address
        # already in use"; it never shares a port), and the start is retried on a new port.
        for _ in range(5):
            if self._start(binary, extra_args, full_env):
                return
        raise RuntimeError("no free port after 5 attempts:\n" + self.log_text())

    def _start(self, binary, extra_args, full_env):
        self.port = free_port()
        args = [binary]
        if self.config is not None:
            args.append(self.config.name)
        args += ["--port", str(self.port), "--bind", "127.0.0.1"] + list(extra_args)
        self.log.seek(0)
        self.log.truncate()
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        for _ in range(200):  # bounded: at most ~10 s
            if self.process.poll() is not None:
                if "Address already in use" in self.log_text():
                    return False
                raise RuntimeError("server exited early:\n" + self.log_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.log_text())

    @property
    def pid(self):
        return self.process.pid

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.process.poll() is None

    def log_text(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                code = self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise AssertionError("server did not stop on SIGTERM")
            assert code == 0, "server exited %d on SIGTERM:\n%s" % (code, self.log_text())


class RedisReference:
    """Debian's redis-server as an oracle: persistence off, on 127.0.0.1 and a port picked
    here, in a temporary directory, stopped by its PID."""

    def __init__(self, binary="/usr/bin/redis-server", extra_args=()):
        self.directory = tempfile.mkdtemp(prefix="redis-reference-")
        for _ in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.directory] + list(extra_args),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(200):  # bounded: at most ~10 s
                if self.process.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(64):
                            return
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        os.rmdir(self.directory)


@contextlib.contextmanager
def beside_redis(binary):
    """shoal-server in memory mode and Debian's redis-server, side by side: yields a
    redis-py client of each (shoal's first), then stops both by their PIDs."""
    import redis  # only the tests that compare with Redis need it
    shoal = Server(binary, env={"SHOAL_MODE": "memory"})
    try:
        reference = RedisReference()
    except BaseException:
        shoal.stop()
        raise
    try:
        yield (redis.Redis(host="127.0.0.1", port=shoal.port, socket_timeout=60),
               redis.Redis(host="127.0.0.1", port=reference.port, socket_timeout=60))
    finally:
        reference.stop()
        shoal.stop()


def connected_clients_settled(r, expected, round_trips=10000):
    """connected_clients once it reaches expected, or after round_trips PINGs (bounded).

    A client closed a moment ago is gone only once the server has read the end of its
    socket, which may come a few rounds after what the test waited for; the caller asserts
    the returned count."""
    for _ in range(round_trips):
        count = int(r.info("clients")["connected_clients"])
        if count == expected:
            return count
        r.ping()
    return int(r.info("clients")["connected_clients"])


def run(tests, binary_argument_index=1):
    """Runs test functions (each gets the server binary), prints a summary, exits 0/1."""
    binary = sys.argv[binary_argument_index]
    passed = failed = 0
    for test in tests:
        started = time.time()
        try:
            test(binary)
            passed += 1
            print("PASS %s (%.1fs)" % (test.__name__, time.time() - started), flush=True)
        except Exception as error:  # report every failure, keep going
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (test.__name__, error), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
