import argparse
import signal

import pytest

from mnist_jax.cli import EpochProgress, StopRequest, positive


def test_positive_accepts_positive_numbers_only():
    assert positive(int)("3") == 3 and positive(float)("1e-4") == 1e-4
    for bad in ("0", "-2", "x", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive"):
            positive(float)(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        positive(int)("2.5")


def test_stop_request_waits_for_the_epoch_then_a_second_ctrl_c_stops_now(capsys):
    stop = StopRequest()
    assert stop.signal is None
    stop(signal.SIGTERM, None)
    assert stop.signal == signal.SIGTERM
    assert "SIGTERM: stopping after this epoch" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        stop(signal.SIGINT, None)


def test_epoch_progress_counts_batches_and_epochs(capsys):
    progress = EpochProgress(batches_per_epoch=3, first_epoch=5)
    for _ in range(2):
        for i in range(3):
            progress(i)
    assert progress.epoch == 7 and progress.bar is None
    err = capsys.readouterr().err
    assert "epoch  5" in err and "epoch  6" in err and "/3 " in err
