"""A small progress display for long loops that do not run inside a Lightning Trainer
(Lightning shows its own bar there).

It prints nothing for work that ends within `delay` seconds, redraws one line on a
terminal, and prints a line every `log_every` seconds otherwise (CI logs stay short).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, unit: str = "it",
                 delay: float = 2.0, log_every: float = 10.0, stream: TextIO | None = None):
        self.label, self.total, self.unit = label, total, unit
        self.delay, self.log_every = delay, log_every
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.count = 0
        self.start = time.perf_counter()
        self._last = self.start
        self._shown = False

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.perf_counter()
        if now - self.start < self.delay:
            return
        if now - self._last >= (0.2 if self.tty else self.log_every):
            self._last = now
            self._draw(now)

    def _draw(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        eta = ""
        if self.total and rate > 0 and not final:
            eta = f", {max(self.total - self.count, 0) / rate:.0f} s left"
        line = f"{self.label}: {done} {self.unit} ({rate:.1f} {self.unit}/s, {elapsed:.0f} s{eta})"
        if self.tty:
            self.stream.write("\r" + line.ljust(79) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown or time.perf_counter() - self.start >= self.delay:
            self._draw(time.perf_counter(), final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
