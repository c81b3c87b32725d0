"""What training shows in a terminal and how it hears Ctrl-C: a progress bar per epoch, stop requests."""

from __future__ import annotations

import os
import signal
import sys


class EpochProgress:
    """A tqdm bar per epoch (`trainer.ProgressFn`), fed between chunks of the epoch; it clears itself
    when the epoch ends, so the terminal keeps only the notebook's lines."""

    def __init__(self):
        self.bar = None

    def __call__(self, epoch: int, done: int, total: int) -> None:
        from tqdm import tqdm

        if done == 0:
            self.bar = tqdm(total=total, desc=f"epoch {epoch:2d}", unit="batch", leave=False, file=sys.stderr,
                            dynamic_ncols=True)
        elif self.bar is not None:
            self.bar.update(done - self.bar.n)
        if done == total and self.bar is not None:
            self.bar.close()
            self.bar = None


class StopRequest:
    """SIGINT and SIGTERM ask training to stop after the current epoch, once its checkpoint is saved;
    a second Ctrl-C asks it to stop sooner, at the next chunk of the epoch (with a progress bar),
    keeping the checkpoints of every epoch printed so far.

    Neither signal raises an exception: the handler only sets flags that the training loop reads
    between steps, so no write (a checkpoint, history.json, the final files) is ever cut halfway.
    Use as a context manager: it handles both signals inside the block and restores the old handlers.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: int | None = None
        self.now = False
        self._previous: dict[int, object] = {}

    def __call__(self, signum: int, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            self.now = True
            message = ("SIGINT again: stopping at the next chunk of the epoch (or its end, without a progress "
                       "bar); every checkpoint written is kept")
        else:
            self.signal = self.signal or signum
            message = (f"{signal.Signals(signum).name}: stopping after this epoch, once its checkpoint is saved "
                       f"(Ctrl-C again to stop sooner)")
        # os.write, not print: a handler may run while the main thread is inside a print to stderr.
        os.write(sys.stderr.fileno(), f"\n{message}\n".encode())

    def requested(self) -> bool:
        return self.signal is not None

    def requested_now(self) -> bool:
        return self.now

    def __enter__(self) -> StopRequest:
        self._previous = {s: signal.signal(s, self) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
