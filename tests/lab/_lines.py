"""Read lines from a child's pipe with a timeout (select on the raw fd, own buffer).

Python's buffered readline() can swallow several lines at once, after which
select() on the fd no longer reports them: this reader never does that.
"""

from __future__ import annotations

import os
import select
import time


class LineReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def readline(self, timeout_s: float) -> str | None:
        """Next line without its newline; None on timeout or EOF."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line.decode(errors="replace")
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")
