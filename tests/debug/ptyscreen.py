"""Running the ``ringleader`` CLI in a pseudo-terminal of a given size, and
seeing what a person would see there.

:func:`run_in_pty` starts a command on a pty whose window size is set (rich
reads its width and height from it), collects everything the command writes
and returns it with the exit status.  :class:`Screen` is just enough of a
VT100 to replay that output -- printable text with autowrap, CR/LF, cursor
up/down/left/right/home, erase line/display, the alternate screen; colours
and other modes are ignored -- so a test reads the final picture, with the
frames ``top`` redrew in place collapsed as the terminal shows them.
:func:`normalise` turns that picture into a snapshot that does not change
with the numbers.
"""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

SNAPSHOTS = Path(__file__).with_name("snapshots")
_CSI = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z@])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


def run_in_pty(argv: list[str], cols: int = 80, rows: int = 24, env: dict | None = None,
               timeout: float = 60.0, cwd: str | None = None,
               signal_when: tuple[str, int] | None = None) -> tuple[str, int]:
    """Runs ``argv`` on a ``cols`` x ``rows`` pseudo-terminal; returns (output, status).

    ``signal_when=(text, signum)`` sends the child ``signum`` once its output
    contains ``text`` (Ctrl-C is ``signal.SIGINT``)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    # Popen, not pty.fork(): the test process runs worker threads, and Python
    # code in a forked child of a threaded process can deadlock on a lock
    # another thread held at fork time.  Popen's child execs at once.
    env = dict(os.environ if env is None else env)
    for var in ("COLUMNS", "LINES"):  # the window size is the terminal's, as for a person
        env.pop(var, None)
    env.setdefault("TERM", "xterm-256color")
    child = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                             start_new_session=True, cwd=cwd)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 1.0)
            if not r:
                if child.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if signal_when is not None and signal_when[0].encode() in out:
                child.send_signal(signal_when[1])
                signal_when = None
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    finally:
        os.close(master)
    return out.decode("utf-8", "replace"), child.returncode


def plain_lines(output: str) -> list[str]:
    """The output's lines as written (escape sequences removed, CR/LF split)."""
    text = _OSC.sub("", _CSI.sub("", output)).replace("\r\n", "\n")
    return [ln.split("\r")[-1] for ln in text.split("\n")]


class Screen:
    """A terminal ``cols`` wide that keeps every line (no scrolling off)."""

    def __init__(self, cols: int = 80):
        self.cols = cols
        self.rows: list[list[str]] = [[]]
        self.r = self.c = 0
        self.top = 0  # first row of the visible screen (for cursor home)

    def _row(self) -> list[str]:
        while len(self.rows) <= self.r:
            self.rows.append([])
        return self.rows[self.r]

    def _put(self, ch: str) -> None:
        if self.c >= self.cols:  # autowrap, as a terminal does past the last column
            self.r, self.c = self.r + 1, 0
        row = self._row()
        while len(row) < self.c:
            row.append(" ")
        if self.c < len(row):
            row[self.c] = ch
        else:
            row.append(ch)
        self.c += 1

    def _csi(self, params: str, op: str) -> None:
        private = params.startswith("?")
        nums = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")]
        n = max(1, nums[0]) if nums else 1
        if private:
            if params.lstrip("?") == "1049" and op == "h":  # alternate screen: a fresh page
                self.top = self.r = len(self.rows)
                self.c = 0
            return
        if op == "A":
            self.r = max(self.top, self.r - n)
        elif op == "B":
            self.r += n
        elif op == "C":
            self.c = min(self.cols, self.c + n)
        elif op == "D":
            self.c = max(0, self.c - n)
        elif op == "G":
            self.c = n - 1
        elif op == "H":
            self.r = self.top + (nums[0] - 1 if nums and nums[0] else 0)
            self.c = nums[1] - 1 if len(nums) > 1 and nums[1] else 0
        elif op == "K":
            row = self._row()
            if nums[0] == 2:
                row.clear()
            elif nums[0] == 0:
                del row[self.c:]
        elif op == "J" and nums[0] in (2, 3):
            del self.rows[self.top:]
            self.rows.append([])

    def feed(self, output: str) -> "Screen":
        output = _OSC.sub("", output)
        pos = 0
        for m in _CSI.finditer(output + "\x1b[0m"):
            for ch in output[pos:m.start()]:
                if ch == "\n":
                    self.r, self.c = self.r + 1, 0
                elif ch == "\r":
                    self.c = 0
                elif ch == "\x08":
                    self.c = max(0, self.c - 1)
                elif ch >= " ":
                    self._put(ch)
            if m.start() < len(output):
                self._csi(m.group(1), m.group(2))
            pos = m.end()
        return self

    def lines(self) -> list[str]:
        out = ["".join(r).rstrip() for r in self.rows]
        while out and not out[-1]:
            out.pop()
        return out


def normalise(lines: list[str], replace: dict[str, str] | None = None) -> str:
    """A snapshot of a screen that does not depend on the numbers: given
    strings replaced (a socket path, a pid), clock times, durations, numbers
    and byte units reduced to placeholders, runs of spaces and rules
    shortened, and repeated lines (table rows of the same shape) kept once."""
    out: list[str] = []
    for ln in lines:
        for old, new in (replace or {}).items():
            ln = ln.replace(old, new)
        ln = re.sub(r"─+", "─", ln)
        ln = re.sub(r"\b\d+\.\d+\.\d+\.\d+:\d+\b|\[[0-9a-f:]+\]:\d+", "<peer>", ln)
        ln = re.sub(r"\b\d\d:\d\d:\d\d\b", "<clock>", ln)
        ln = re.sub(r"\b(\d+d\d+h|\d+h\d+m|\d+m\d+s|\d+(\.\d+)?s)\b", "<dur>", ln)
        ln = re.sub(r"\d+(\.\d+)?(e-?\d+)?[kMG]?(?![\w.])", "N", ln)
        ln = re.sub(r"\bN (B|KiB|MiB|GiB|TiB)\b", "N B", ln)
        # a value that may be absent ("-") or in ms depending on the moment
        ln = re.sub(r"\bN ms\b|(?<= )-(?= |$)", "N", ln)
        ln = re.sub(r" +", " ", ln).rstrip()
        if out and out[-1] == ln:
            continue
        out.append(ln)
    return "\n".join(out) + "\n"


def check_snapshot(name: str, text: str) -> None:
    """Compares ``text`` with ``snapshots/<name>.txt``; with
    ``RINGLEADER_UPDATE_SNAPSHOTS=1`` (re)writes the file instead."""
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("RINGLEADER_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"no snapshot {path}; run with RINGLEADER_UPDATE_SNAPSHOTS=1 to write it"
    expected = path.read_text()
    assert text == expected, (f"{name}: the output changed (RINGLEADER_UPDATE_SNAPSHOTS=1 "
                              f"rewrites the snapshot)\n--- expected\n{expected}\n--- got\n{text}")
