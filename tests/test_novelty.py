"""The rule of "not a digit" (mnist_jax/apps/novelty.py): the non-digits it learns from, the share
of held-out digits it doubts, what it catches, how a run keeps it, and the runs without one."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
from conftest import SMALL
from test_cli import mnist_jax

from mnist_jax.apps import inference, novelty
from mnist_jax.config import RunOptions, TrainConfig
from mnist_jax.fast import model_for
from mnist_jax.run import experiment, rundir

CONFIG = TrainConfig(epochs=2, **SMALL)


def test_the_made_pictures_are_digits_and_non_digits_drawn_from_the_key(small_data):
    (images, labels), _ = small_data
    images, labels, n = images[:1024], labels[:1024], 1024  # as a run of the small setting makes them
    pictures, targets = novelty.made_pictures(jax.random.key(0), images, labels, n)
    pictures, targets = np.asarray(pictures), np.asarray(targets)
    assert pictures.shape == (2 * n, 28, 28, 1) and pictures.dtype == np.uint8
    assert targets.tolist() == [0] * n + [1] * n
    again, _ = novelty.made_pictures(jax.random.key(0), images, labels, n)
    other, _ = novelty.made_pictures(jax.random.key(1), images, labels, n)
    assert np.array_equal(pictures, np.asarray(again)) and not np.array_equal(pictures, np.asarray(other))
    # The digits are training digits moved at most 2 pixels (some a pixel thicker): as much ink or more.
    ink = pictures.reshape(2 * n, -1).astype(float).sum(1)
    assert ink[:n].min() >= images.reshape(n, -1).astype(float).sum(1).min() * 0.9
    # The made ones are none of the training digits, and are unlike one another.
    made = pictures[n:].reshape(n, -1)
    assert not (made[:, None, :] == images.reshape(1, n, -1)[:, :64]).all(-1).any()
    assert len({m.tobytes() for m in made}) >= 0.98 * n


@pytest.fixture(scope="module")
def finished_small_run(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("novelty") / "run"
    experiment.run(dataclasses.replace(CONFIG, epochs=1), run_dir, RunOptions(data_dir=data_dir), hooks=[])
    return run_dir


def test_a_runs_rule_doubts_its_share_of_held_out_digits_and_catches_strange_ones(finished_small_run, mnist):
    """The rule the run chose at its end, on the test set's even-numbered digits (it holds no
    validation split out), as the run keeps it."""
    record, params = rundir.load_record_and_params(finished_small_run)
    doubts, model = rundir.load_doubts(finished_small_run, record), model_for(record.config)
    test_images = mnist["test"][0][:record.config.test_examples]
    chosen, held_out = test_images[0::2], test_images[1::2]
    assert abs(doubts.flags(params, chosen, model).mean() - novelty.SHARE) <= 1.5 / len(chosen)  # to a picture
    assert doubts.flags(params, held_out, model).mean() <= 0.05  # digits no choice has seen
    # Test digits inverted (white on black) or with their pixels shuffled: never trained on.
    rng = np.random.default_rng(0)
    inverted = 255 - held_out[:200]
    shuffled = np.stack([rng.permutation(d.reshape(-1)).reshape(28, 28, 1) for d in held_out[:200]])
    for strange in (inverted, shuffled):
        assert doubts.flags(params, strange, model).mean() >= 0.9
    rule = doubts.rule
    again = novelty.from_bytes(novelty.to_bytes(rule), rule.record(), rule.features)
    features = novelty.batched(rule.features, params, shuffled)
    probabilities = inference.classify(params, shuffled, model)
    assert np.array_equal(again.verdicts(features, probabilities), rule.verdicts(features, probabilities))
    with pytest.raises(ValueError, match="not a saved rule"):
        novelty.from_bytes(b"\x00 no msgpack", rule.record(), rule.features)


def test_the_bundled_rule_catches_pictures_no_classifier_should_name(mnist):
    """Its head never saw the test digits; nor these pictures made from them."""
    record, params = rundir.load_record_and_params(rundir.BUNDLED_RUN)
    doubts, model = rundir.load_doubts(None, record), model_for(record.config)
    digits = mnist["test"][0][1:1000:2]
    rng = np.random.default_rng(1)
    shuffled = np.stack([rng.permutation(d.reshape(-1)).reshape(28, 28, 1) for d in digits])
    for name, strange in (("inverted", 255 - digits), ("binary noise", 255 * (rng.random(digits.shape) < 0.2)),
                          ("pixels shuffled", shuffled)):
        caught = doubts.flags(params, strange.astype(np.uint8), model).mean()
        assert caught >= 0.8, (name, caught)
    assert doubts.flags(params, digits, model).mean() <= 0.02
    # Its words name what the run's pictures show: a Fashion-MNIST run's say "not a fashion article".
    inverted = (255 - digits[:20]).astype(np.uint8)
    probabilities = inference.classify(params, inverted, model)
    words = dataclasses.replace(doubts, thing="fashion article").verdicts(params, inverted, probabilities)
    assert set(words) <= {"not a fashion article", "unsure"} and "not a fashion article" in words
    assert doubts.thing == "digit" and "not a digit" in doubts.verdicts(params, inverted, probabilities)


def test_nnx_reads_the_features_of_its_linen_twin(small_fits, mnist):
    params = small_fits[1][0].params
    images = mnist["test"][0][:16]
    linen = novelty.features_for(CONFIG)(params, images)
    nnx = novelty.features_for(dataclasses.replace(CONFIG, model="nnx"))(params, images)
    assert linen.shape == (16, 1600) and np.allclose(linen, nnx)


def test_a_damaged_or_missing_rule_is_one_line_and_a_run_without_one_still_predicts(finished_small_run, data_dir,
                                                                                      tmp_path):
    digit = "tests/fixtures/digits/7-pen-clean.png"
    record = json.loads((finished_small_run / "history.json").read_text())
    assert set(record["not_a_digit"]) == {"doubt_above", "novelty_sha256"} and "unsure_below" not in record
    damaged = tmp_path / "damaged"
    shutil.copytree(finished_small_run, damaged)
    with (damaged / novelty.FILE).open("r+b") as f:
        f.seek(1000)
        f.write(b"\xff\xff")
    code, out, err = mnist_jax("predict", digit, "--run", damaged)
    assert code == 2 and out == "" and err.count("\n") == 1 and "novelty.msgpack: damaged" in err, err
    (damaged / novelty.FILE).unlink()
    code, _, err = mnist_jax("predict", digit, "--run", damaged)
    assert code == 2 and err.count("\n") == 1 and "novelty.msgpack: not found" in err, err
    # A run written before the rule existed (no not_a_digit in its history.json) doubts by the top
    # probability alone, and scripts/fit_doubts.py's library call gives it a rule, its params untouched.
    del record["not_a_digit"]
    (damaged / "history.json").write_text(json.dumps(record))
    code, out, err = mnist_jax("predict", digit, "--run", damaged)
    assert code == 0 and out.startswith(f"{digit}: "), err
    assert rundir.load_doubts(damaged, rundir.read_record(damaged)).rule is None
    params_before = (damaged / "params.msgpack").read_bytes()
    rule = experiment.refit_doubts(damaged, RunOptions(data_dir=data_dir))
    after = rundir.read_record(damaged)
    assert rule["chosen_on"] == "the test set's even-numbered examples" and after.not_a_digit is not None
    assert (damaged / "params.msgpack").read_bytes() == params_before and after.params_sha256 == record["params_sha256"]
    assert after.not_a_digit == json.loads((finished_small_run / "history.json").read_text())["not_a_digit"]
