import dataclasses
import gzip
import hashlib
import json
import multiprocessing
import re
import shutil
import typing
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import SMALL_FLAGS, need_fashion_mnist
from PIL import Image

from mnist_jax import config, data
from mnist_jax.hooks import Hooks, console
from mnist_jax.hooks import tensorboard as summaries

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def as_multiset(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows of (label, pixels) in sorted order: equal for the same examples in any order."""
    rows = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(labels), -1)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_bundled_checksums_match_the_code():
    sums = dict(line.split()[::-1] for line in (data.BUNDLED_DIR / "SHA256SUMS").read_text().splitlines())
    assert sums == data.SHA256
    for name, digest in sums.items():
        content = gzip.decompress((data.BUNDLED_DIR / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == digest


def test_prepared_splits_have_mnist_shapes_and_class_counts(mnist):
    for split, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        images, labels = mnist[split]
        assert images.shape == (sum(counts), 28, 28, 1) and images.dtype == np.uint8
        assert labels.shape == (sum(counts),) and labels.dtype == np.int32
        assert np.bincount(labels, minlength=10).tolist() == counts
        assert images.max() == 255 and images.min() == 0


def test_prepared_splits_hold_exactly_the_idx_examples(mnist):
    for split in data.SPLITS:
        idx_images, idx_labels = data.read_split_idx(data.BUNDLED_DIR, split)
        np.testing.assert_array_equal(as_multiset(*mnist[split]), as_multiset(idx_images, idx_labels))


def test_a_count_reads_the_splits_first_examples_only(data_dir, mnist):
    for split, count in (("train", 1000), ("test", 1)):
        images, labels = data.load_split(split, data_dir, count=count)
        np.testing.assert_array_equal(images, mnist[split][0][:count])
        np.testing.assert_array_equal(labels, mnist[split][1][:count])
    images, labels = data.load_split("test", data_dir, count=10**6)  # more than there are: all of them
    assert len(labels) == len(mnist["test"][1]) == 10_000


def test_prepare_twice_is_a_no_op(data_dir):
    path = data.prepare(data_dir)
    before = {p: p.stat().st_mtime_ns for p in path.iterdir()}
    assert data.prepare(data_dir) == path
    assert {p: p.stat().st_mtime_ns for p in path.iterdir()} == before


def test_load_split_of_an_unprepared_data_dir_says_what_to_call(tmp_path):
    with pytest.raises(data.DataError, match=r"not prepared there; call mnist_jax.data.prepare\(data_dir\) first"):
        data.load_split("train", tmp_path)
    assert not data.is_prepared(tmp_path)


@pytest.mark.parametrize("damage", ["one bit", "truncated"])
def test_a_damaged_prepared_dataset_is_a_one_line_error_saying_what_to_do(data_dir, tmp_path, damage):
    damaged = tmp_path / "tfds"
    shutil.copytree(data_dir, damaged)
    (test_file,) = damaged.glob("mnist_idx/*/mnist_idx-test.array_record-*")
    content = bytearray(test_file.read_bytes())
    if damage == "one bit":
        content[len(content) // 2] ^= 0x01
    else:
        del content[len(content) // 2:]
    test_file.write_bytes(bytes(content))
    with pytest.raises(data.DataError, match=r"the prepared MNIST is damaged \(.*Riegeli.*\); delete that directory") as info:
        data.load_split("test", damaged)
    assert "\n" not in str(info.value)


def test_a_manual_dir_that_does_not_exist_is_refused_even_when_prepared(data_dir, tmp_path):
    assert data.is_prepared(data_dir)
    with pytest.raises(data.DataError, match="manual dir not found"):
        data.prepare(data_dir, manual_dir=tmp_path / "nowhere")


def test_load_split_rejects_an_unknown_split(data_dir):
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_split("validation", data_dir)


@pytest.fixture(scope="module")
def raw_idx_dir(tmp_path_factory) -> Path:
    """The four IDX files decompressed, as a user might have them."""
    directory = tmp_path_factory.mktemp("raw_idx")
    for gz in data.BUNDLED_DIR.glob("*.gz"):
        (directory / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    return directory


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _prepare_in(data_dir: str) -> tuple[str, int]:
    """Prepare in a process of its own: the path, and how many times this process wrote the dataset."""
    tfds.display_progress_bar(False)
    written = []
    generate = data.MnistIdx._split_generators

    def counted(self, dl_manager):
        written.append(1)
        return generate(self, dl_manager)

    data.MnistIdx._split_generators = counted
    return str(data.prepare(data_dir)), len(written)


def test_two_processes_preparing_at_once_prepare_it_once_and_quietly(tmp_path, capfd):
    data_dir = str(tmp_path / "tfds")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        (path_a, wrote_a), (path_b, wrote_b) = pool.map(_prepare_in, [data_dir, data_dir], chunksize=1)
    assert path_a == path_b and wrote_a + wrote_b == 1
    _, labels = data.load_split("train", data_dir)
    assert np.bincount(labels).tolist() == TRAIN_COUNTS
    assert [p.name for p in (tmp_path / "tfds" / data.DATASET_NAME).iterdir()] == ["1.0.0"]
    output = "".join(capfd.readouterr())
    assert "Downloading and preparing" not in output and "downloaded and prepared" not in output


def _assert_nothing_prepared(data_dir: Path, name: str = data.DATASET_NAME) -> None:
    leftovers = list((data_dir / name).glob("*")) if (data_dir / name).exists() else []
    assert leftovers == []


def _corrupt(path: Path, change) -> None:
    path.write_bytes(change(path.read_bytes()))


def _with_header(raw: bytes, offset: int, value: int) -> bytes:
    return raw[:offset] + value.to_bytes(4, "big") + raw[offset + 4:]


CORRUPTIONS = {
    "missing": ("train-labels-idx1-ubyte", None, "file not found"),
    "truncated": ("t10k-images-idx3-ubyte", lambda b: b[: len(b) // 2], "truncated"),
    "bad magic": ("train-labels-idx1-ubyte", lambda b: _with_header(b, 0, 0x803), "bad IDX magic"),
    "wrong count": ("t10k-labels-idx1-ubyte", lambda b: _with_header(b, 4, 9999), "wrong shape"),
    "checksum": ("t10k-labels-idx1-ubyte", lambda b: b[:-1] + bytes([(b[-1] + 1) % 10]), "SHA-256 mismatch"),
    "header only": ("t10k-images-idx3-ubyte", lambda b: b[:10], "shorter than the IDX header"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_bad_idx_file_is_a_one_line_error_naming_it(tmp_path, raw_idx_dir, case):
    name, change, message = CORRUPTIONS[case]
    manual = _copy(raw_idx_dir, tmp_path / "manual")
    if change is None:
        (manual / name).unlink()
    else:
        _corrupt(manual / name, change)
    data_dir = tmp_path / "tfds"
    with pytest.raises(data.DataError, match=message) as info:
        data.prepare(data_dir, manual_dir=manual)
    assert name in str(info.value) and "\n" not in str(info.value)
    _assert_nothing_prepared(data_dir)


def test_corrupted_gzip_is_named(tmp_path):
    manual = _copy(data.BUNDLED_DIR, tmp_path / "manual")
    _corrupt(manual / "t10k-labels-idx1-ubyte.gz", lambda b: b[:-20])
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte.gz: corrupted gzip"):
        data.read_split_idx(manual, "test")


# Datasets as a setting -------------------------------------------------------------------------

FASHION_FIRST_LABELS = {"train": [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], "test": [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]}


def test_the_config_names_the_datasets_that_data_declares():
    assert typing.get_args(config.DatasetName) == tuple(data.DATASETS)
    for name, dataset in data.DATASETS.items():
        assert dataset.name == name and len(dataset.class_names) == 10
        assert set(dataset.sha256) == set(dataset.file_names)
        assert data.BUILDERS[name].name == dataset.tfds_name == f"{name}_idx"
    assert data.MnistIdx.name == data.DATASET_NAME == "mnist_idx"
    assert config.TrainConfig.from_dict({"epochs": 3}).dataset == "mnist"  # a run saved before the setting


def test_tensorboard_tags_keep_mnists_and_name_other_classes():
    assert summaries.class_tags(data.MNIST.class_names) == [f"test/accuracy_class_{c}" for c in range(10)]
    tags = summaries.class_tags(data.FASHION_MNIST.class_names)
    assert tags[0] == "test/accuracy_class_0_T_shirt_top" and tags[9] == "test/accuracy_class_9_Ankle_boot"


def raw_labels(directory: Path, name: str) -> np.ndarray:
    return np.frombuffer(gzip.decompress((directory / f"{name}.gz").read_bytes()), np.uint8, offset=8)


def test_fashion_mnist_prepares_and_loads_its_idx_examples(fashion_data_dir):
    source = data.FASHION_MNIST.source_dir
    assert data.is_prepared(fashion_data_dir, "fashion_mnist") and not data.is_prepared(fashion_data_dir)
    for split, count in (("train", 60_000), ("test", 10_000)):
        images, labels = data.load_split(split, fashion_data_dir, dataset="fashion_mnist")
        assert images.shape == (count, 28, 28, 1) and images.dtype == np.uint8
        assert labels.shape == (count,) and labels.dtype == np.int32
        assert np.bincount(labels).tolist() == [count // 10] * 10
        idx_images, idx_labels = data.read_split_idx(source, split, "fashion_mnist")
        assert idx_labels[:10].tolist() == FASHION_FIRST_LABELS[split]
        np.testing.assert_array_equal(idx_labels, raw_labels(source, data.FASHION_MNIST.idx_files[split][1]))
        np.testing.assert_array_equal(as_multiset(images, labels), as_multiset(idx_images, idx_labels))
    assert data.prepare(fashion_data_dir, dataset="fashion_mnist") == fashion_data_dir / "fashion_mnist_idx" / "1.0.0"


def _fashion_manual_dir(directory: Path) -> Path:
    """Fashion-MNIST's four files, linked into `directory`."""
    need_fashion_mnist()
    directory.mkdir()
    for gz in data.FASHION_MNIST.source_dir.glob("*.gz"):
        (directory / gz.name).symlink_to(gz)
    return directory


def test_fashion_mnists_checksums_are_checked(tmp_path):
    manual = _fashion_manual_dir(tmp_path / "manual")
    name = "t10k-labels-idx1-ubyte"
    content = gzip.decompress((manual / f"{name}.gz").read_bytes())
    (manual / f"{name}.gz").unlink()
    (manual / name).write_bytes(content[:-1] + bytes([(content[-1] + 1) % 10]))
    with pytest.raises(data.DataError, match=rf"{name}: SHA-256 mismatch: .* expected Fashion-MNIST's ") as info:
        data.prepare(tmp_path / "tfds", manual_dir=manual, dataset="fashion_mnist")
    assert "\n" not in str(info.value)
    _assert_nothing_prepared(tmp_path / "tfds", "fashion_mnist_idx")


def test_fashion_mnists_files_as_mnist_are_refused_naming_both_datasets(tmp_path):
    manual = _fashion_manual_dir(tmp_path / "manual")
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz: SHA-256 mismatch: content is \w+, "
                                             r"expected MNIST's \w+; that is Fashion-MNIST's train-images-idx3-ubyte "
                                             r"\(--dataset fashion_mnist\)$") as info:
        data.prepare(tmp_path / "tfds", manual_dir=manual)
    assert "\n" not in str(info.value)
    _assert_nothing_prepared(tmp_path / "tfds")


def test_absent_fashion_mnist_files_say_how_to_get_them(tmp_path):
    elsewhere = dataclasses.replace(data.FASHION_MNIST, source_dir=tmp_path / "nowhere")
    with pytest.raises(data.DataError) as info:
        data.prepare(tmp_path / "tfds", dataset=elsewhere)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'nowhere'}: Fashion-MNIST's IDX files are not there; ")
    assert "apt-get install dataset-fashion-mnist" in message and "--manual-dir DIR" in message
    assert "\n" not in message
    with pytest.raises(data.DataError, match=r"Fashion-MNIST is not prepared there; call "
                                             r"mnist_jax.data.prepare\(data_dir, dataset='fashion_mnist'\) first"):
        data.load_split("test", tmp_path / "tfds", dataset="fashion_mnist")


def test_the_preparing_line_names_the_dataset(capsys):
    hooks = Hooks([console.Printer()])
    hooks.on_prepare(Path("/data/fashion"), "fashion_mnist")
    hooks.on_prepare(data.BUNDLED_DIR)
    assert capsys.readouterr().out.splitlines() == [
        "Preparing Fashion-MNIST from /data/fashion (once, a few seconds)",
        f"Preparing MNIST from {data.BUNDLED_DIR} (once, a few seconds)"]


def test_an_unknown_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.prepare(tmp_path, dataset="cifar10")


def test_train_on_fashion_mnist_names_it(fashion_data_dir, tmp_path):
    from test_cli import LINE, mnist_jax

    code, stdout, stderr = mnist_jax("train", "--dataset", "fashion_mnist", "--epochs", 1, *SMALL_FLAGS,
                                     "--data-dir", fashion_data_dir, "--run-dir", tmp_path / "run", "--no-tensorboard")
    assert code == 0, stderr
    assert f"Fashion-MNIST: 1024 train / 1024 test examples from {fashion_data_dir}/fashion_mnist_idx/1.0.0" in stdout
    assert sum(bool(LINE.match(line)) for line in stdout.splitlines()) == 1
    assert json.loads((tmp_path / "run" / "history.json").read_text())["config"]["dataset"] == "fashion_mnist"
    names = "|".join(map(re.escape, data.FASHION_MNIST.class_names))
    assert re.search(rf"label: ({names}) ", (tmp_path / "run" / "classification.svg").read_text())
    images, _ = data.load_split("test", fashion_data_dir, dataset="fashion_mnist")
    Image.fromarray(images[0, :, :, 0]).save(tmp_path / "item.png")
    code, stdout, stderr = mnist_jax("predict", tmp_path / "item.png", "--run", tmp_path / "run", "--top", 2)
    assert code == 0, stderr
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'item.png'))}: ({names}) \(0\.\d{{4}}\)  ({names}) \(0\.\d{{4}}\)\n",
                        stdout), stdout
