"""What training shows in a terminal and how it hears Ctrl-C: a progress bar per epoch, stop requests."""

from __future__ import annotations

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
    """SIGINT/SIGTERM ask training to stop at the end of the current epoch; a second Ctrl-C stops now.

    Use as a context manager: it handles both signals inside the block and restores the old handlers.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __call__(self, signum: int, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this epoch (Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)

    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopRequest:
        self._previous = {s: signal.signal(s, self) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
