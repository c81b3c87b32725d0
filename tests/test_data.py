import gzip
import hashlib
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mnist_jax import data

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


def _assert_nothing_prepared(data_dir: Path) -> None:
    leftovers = list((data_dir / data.DATASET_NAME).glob("*")) if (data_dir / data.DATASET_NAME).exists() else []
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
