import signal

from mnist_jax.hooks.console import ProgressBar, StopOnSignal


def test_stop_request_waits_for_the_epoch_then_a_second_ctrl_c_asks_for_sooner_and_never_raises(capfd):
    with StopOnSignal() as stop:
        assert signal.getsignal(signal.SIGTERM) is stop and stop.stop() is None
        signal.raise_signal(signal.SIGTERM)
        assert stop.signal == signal.SIGTERM and stop.stop() == "after-epoch"
        assert "SIGTERM: stopping after this epoch" in capfd.readouterr().err
        signal.raise_signal(signal.SIGTERM)  # a second SIGTERM changes nothing
        assert stop.stop() == "after-epoch"
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt: nothing is cut halfway
        assert stop.stop() == "now" and stop.signal == signal.SIGTERM
        assert "SIGINT again: stopping at the next chunk of the epoch" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is not stop  # the old handlers are back


def test_the_progress_bar_follows_the_chunks_of_each_epoch(capsys):
    progress = ProgressBar()
    for epoch in (5, 6):
        progress.on_progress(epoch, 0, 3)
        assert progress.bar.total == 3 and progress.bar.desc == f"epoch  {epoch}"
        progress.on_progress(epoch, 2, 3)
        assert progress.bar.n == 2
        progress.on_progress(epoch, 3, 3)
        assert progress.bar is None  # closed, and cleared from the terminal
    err = capsys.readouterr().err
    assert "epoch  5" in err and "epoch  6" in err


def test_the_printer_names_what_differs_from_the_notebook(capsys):
    from pathlib import Path

    from mnist_jax.config import TrainConfig
    from mnist_jax.hooks import Start
    from mnist_jax.hooks.console import Printer
    from mnist_jax.run.history import empty

    def printed(config):
        Printer().on_start(Start(config, None, Path("data"), 1024, 1024, "one device", empty()))
        return capsys.readouterr().out

    assert "Network:" not in printed(TrainConfig()) and "Optimizer:" not in printed(TrainConfig())
    assert "Network: cnn (Flax nnx); augmentation: none" in printed(TrainConfig(model="nnx"))
    assert "augmentation: shift of up to 3 pixels" in printed(TrainConfig(augment="shift", augment_shift=3))
    assert "Optimizer: adamw, learning rate 0.001 on a constant schedule" in printed(
        TrainConfig(optimizer="adamw", learning_rate=1e-3))
