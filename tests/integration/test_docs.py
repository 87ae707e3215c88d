"""The documentation against the binary: docs/OPERATIONS.md lists every setting exactly as
`shoal-server --help` prints it (name, default, meaning), and docs/PROTOCOL.md's command
table names every command the server answers to (COMMAND LIST)."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs")


def read_doc(name):
    with open(os.path.join(DOCS, name)) as f:
        return f.read()


def test_settings_documented(binary):
    printed = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    help_lines = [line for line in (printed.stdout + printed.stderr).splitlines()
                  if line.startswith("  --")]
    doc_lines = [line for line in read_doc("OPERATIONS.md").splitlines()
                 if line.startswith("  --")]
    assert len(help_lines) > 20, help_lines
    missing = [line for line in help_lines if line not in doc_lines]
    stale = [line for line in doc_lines if line not in help_lines]
    assert not missing and not stale, (
        "OPERATIONS.md differs from --help:\n  missing %r\n  stale %r" % (missing, stale))


def test_commands_documented(binary):
    server = harness.Server(binary, env={"SHOAL_MODE": "memory"})
    try:
        listed = subprocess.run(["redis-cli", "-p", str(server.port), "COMMAND", "LIST"],
                                capture_output=True, text=True, timeout=30)
        commands = sorted(name.strip().upper() for name in listed.stdout.split() if name.strip())
    finally:
        server.stop()
    table = "\n".join(line for line in read_doc("PROTOCOL.md").splitlines()
                      if line.startswith("| "))
    words = set(re.findall(r"[A-Z][A-Z-]+", table))
    undocumented = [name for name in commands if name not in words]
    assert len(commands) > 50 and not undocumented, undocumented


if __name__ == "__main__":
    harness.run([test_settings_documented, test_commands_documented])
