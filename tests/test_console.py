import argparse
import signal

import pytest

from mnist_jax.cli import positive
from mnist_jax.console import EpochProgress, StopRequest


def test_positive_accepts_positive_numbers_only():
    assert positive(int)("3") == 3 and positive(float)("1e-4") == 1e-4
    for bad in ("0", "-2", "x", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive"):
            positive(float)(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        positive(int)("2.5")


def test_stop_request_waits_for_the_epoch_then_a_second_ctrl_c_asks_for_sooner_and_never_raises(capfd):
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) is stop and not stop.requested()
        signal.raise_signal(signal.SIGTERM)
        assert stop.signal == signal.SIGTERM and stop.requested() and not stop.requested_now()
        assert "SIGTERM: stopping after this epoch" in capfd.readouterr().err
        signal.raise_signal(signal.SIGTERM)  # a second SIGTERM changes nothing
        assert not stop.requested_now()
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt: nothing is cut halfway
        assert stop.requested_now() and stop.signal == signal.SIGTERM
        assert "SIGINT again: stopping at the next chunk of the epoch" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is not stop  # the old handlers are back


def test_epoch_progress_follows_the_chunks_of_each_epoch(capsys):
    progress = EpochProgress()
    for epoch in (5, 6):
        progress(epoch, 0, 3)
        assert progress.bar.total == 3 and progress.bar.desc == f"epoch  {epoch}"
        progress(epoch, 2, 3)
        assert progress.bar.n == 2
        progress(epoch, 3, 3)
        assert progress.bar is None  # closed, and cleared from the terminal
    err = capsys.readouterr().err
    assert "epoch  5" in err and "epoch  6" in err
