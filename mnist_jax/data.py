"""MNIST through tensorflow-datasets, with no TensorFlow and no network.

The four IDX files ship inside the package (`mnist_jax/mnist/`). `prepare()` checks them and
writes them once into the TFDS data dir as the `mnist_idx` dataset (ArrayRecord); `load_split()`
reads a split back through `tfds.data_source` as numpy arrays.

    from mnist_jax import data
    data.prepare()                                  # ~4 s the first time, then a no-op
    images, labels = data.load_split("train")       # uint8 (60000, 28, 28, 1), int32 (60000,)
    images, labels = data.load("test")              # both steps in one call

The data dir is TFDS's own (`~/tensorflow_datasets`, or `$TFDS_DATA_DIR`) unless `data_dir` is
given. The stock TFDS `mnist` builder is not used: it needs TensorFlow to prepare and accepts only
its own gzip bytes. Our dataset has its own name, so it never touches a stock `mnist` beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from mnist_jax.errors import UserError

DATASET_NAME = "mnist_idx"
SPLITS = ("train", "test")
BUNDLED_DIR = Path(__file__).parent / "mnist"

# (images file, labels file, examples) per split, and the SHA-256 of each file's decompressed
# content, as in the bundled SHA256SUMS.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
SHA256 = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801


class DataError(UserError, ValueError):
    """A dataset file is missing or wrong; the message is one line naming the file."""


def find_idx_file(directory: Path, name: str) -> Path:
    """`directory/name`, or `directory/name.gz`; a DataError names both when neither exists."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory / name}[.gz]: file not found")


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupted gzip data ({e})") from None


def read_idx(path: Path, expected_count: int, *, labels: bool) -> np.ndarray:
    """An IDX file's content, checked: magic, shape, size and SHA-256.

    Returns uint8 (count, 28, 28, 1) images or uint8 (count,) labels.
    """
    content = _read_bytes(path)
    magic, header = (_LABELS_MAGIC, 8) if labels else (_IMAGES_MAGIC, 16)
    if len(content) < header:
        raise DataError(f"{path}: truncated: {len(content)} bytes, shorter than the IDX header")
    found_magic, count, *dims = np.frombuffer(content[:header], ">u4").tolist()
    if found_magic != magic:
        raise DataError(f"{path}: bad IDX magic 0x{found_magic:08x}, expected 0x{magic:08x} "
                        f"({'labels' if labels else 'images'})")
    if count != expected_count or (not labels and dims != [28, 28]):
        shape = "x".join(map(str, [count, *dims]))
        want = f"{expected_count}" if labels else f"{expected_count}x28x28"
        raise DataError(f"{path}: wrong shape {shape}, expected {want}")
    body = len(content) - header
    expected_body = count * (1 if labels else 28 * 28)
    if body != expected_body:
        raise DataError(f"{path}: truncated: {body} bytes of data, expected {expected_body}")
    name = path.name.removesuffix(".gz")
    digest = hashlib.sha256(content).hexdigest()
    if name in SHA256 and digest != SHA256[name]:
        raise DataError(f"{path}: SHA-256 mismatch: content is {digest}, expected {SHA256[name]}")
    array = np.frombuffer(content, np.uint8, offset=header)
    return array if labels else array.reshape(count, 28, 28, 1)


def read_split_idx(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's images and labels straight from the IDX files in `directory`, checked."""
    images_name, labels_name, count = IDX_FILES[split]
    images = read_idx(find_idx_file(directory, images_name), count, labels=False)
    labels = read_idx(find_idx_file(directory, labels_name), count, labels=True)
    return images, labels


class MnistIdx(tfds.core.GeneratorBasedBuilder):
    """MNIST from the four IDX files in the manual dir (default: the copy bundled with mnist_jax)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "MNIST from local IDX files, images stored raw."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        "t10k-labels-idx1-ubyte (each optionally .gz) in the manual dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="The MNIST handwritten digits, read from the original IDX files.",
            features=tfds.features.FeaturesDict({
                # Raw bytes, not PNG: decoding 70,000 PNGs costs ~8 s per load, raw bytes ~0.1 s.
                "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="http://yann.lecun.com/exdb/mnist/",
            license="CC BY-SA 3.0",
        )

    # TFDS prints "Downloading and preparing dataset Unknown size ..." and "... downloaded and
    # prepared" around the preparation; nothing is downloaded here, and callers say what happens.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        directory = Path(dl_manager.manual_dir)
        # Read and check every file before any example is written.
        arrays = {split: read_split_idx(directory, split) for split in SPLITS}
        return {split: self._generate_examples(*arrays[split]) for split in SPLITS}

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        for i in range(len(labels)):
            yield i, {"image": images[i], "label": int(labels[i])}


def _builder(data_dir: str | os.PathLike | None) -> MnistIdx:
    return MnistIdx(data_dir=os.fspath(data_dir) if data_dir else None, file_format="array_record")


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Process-wide lock on `path`, so two processes never prepare the same dataset at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare(data_dir: str | os.PathLike | None = None, manual_dir: str | os.PathLike | None = None) -> Path:
    """Write the `mnist_idx` dataset into `data_dir` unless it is already there; return its path.

    `manual_dir` holds the four IDX files (`.gz` or not); default: the bundled copy. The files
    are checked (magic, shape, SHA-256) before anything is written, and TFDS writes into a
    temporary directory that it renames into place, so a failure leaves nothing half-prepared.
    """
    manual = Path(manual_dir) if manual_dir else BUNDLED_DIR
    if not manual.is_dir():
        raise DataError(f"{manual}: manual dir not found")
    builder = _builder(data_dir)
    if _prepared(builder):
        if manual_dir:  # files given again are checked too: they must be MNIST's, as the prepared ones are
            for split in SPLITS:
                read_split_idx(manual, split)
        return Path(builder.data_path)
    try:
        with _exclusive_lock(Path(builder.data_dir).parent.parent / f"{DATASET_NAME}.lock"):
            builder = _builder(data_dir)  # another process may have prepared it while we waited
            tfds.display_progress_bar(False)  # its bars tell a user of the commands nothing
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=os.fspath(manual),
                    try_download_gcs=False,  # offline, a GCS lookup retries for minutes
                ),
            )
    except OSError as e:
        raise DataError(f"{e.filename or builder.data_dir}: cannot write dataset ({e.strerror})") from None
    return Path(builder.data_path)


def is_prepared(data_dir: str | os.PathLike | None = None) -> bool:
    """Whether `prepare(data_dir)` has written the dataset already (then it reads no IDX file)."""
    return _prepared(_builder(data_dir))


def _prepared(builder: MnistIdx) -> bool:
    return builder.data_path.joinpath("dataset_info.json").exists()


def load_split(split: str, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A prepared split as uint8 images (N, 28, 28, 1) and int32 labels (N,), in TFDS's stored order.

    The arrays are read-only, and kept for the next call in this process as long as the prepared
    files are unchanged (a command that trains, then evaluates and draws, reads them once)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    builder = _builder(data_dir)
    if not _prepared(builder):
        raise DataError(f"{builder.data_dir}: MNIST is not prepared there; call mnist_jax.data.prepare(data_dir) first, "
                        f"or data.load(split, data_dir), which prepares it")
    files = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(builder.data_path).iterdir()))
    return _read_split(split, os.fspath(data_dir) if data_dir else None, files)


@functools.lru_cache(maxsize=4)
def _read_split(split: str, data_dir: str | None, files: tuple) -> tuple[np.ndarray, np.ndarray]:
    del files  # part of the cache's key only: changed files are read anew
    try:
        source = tfds.data_source(DATASET_NAME, split=split, data_dir=data_dir, download=False)
        images, labels = _decode_records(source.data_source.__getitems__(range(len(source))))
    except (RuntimeError, ValueError, OSError) as e:  # ArrayRecord's checksums, or bytes that do not parse
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DataError(f"{_builder(data_dir).data_dir}: the prepared MNIST is damaged ({reason}); delete that "
                        f"directory and run again to prepare it anew") from None
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load(split: str, data_dir: str | os.PathLike | None = None,
         manual_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`prepare()` if needed, then `load_split()`."""
    prepare(data_dir, manual_dir)
    return load_split(split, data_dir)


def _decode_records(records: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Parse serialized examples in one pass: 5x faster than TFDS's per-example decoding here."""
    parse = tf_example_pb2.Example.FromString
    images, labels = [], []
    for record in records:
        feature = parse(record).features.feature
        images.append(feature["image"].bytes_list.value[0])
        labels.append(feature["label"].int64_list.value[0])
    return (np.frombuffer(b"".join(images), np.uint8).reshape(-1, 28, 28, 1),
            np.asarray(labels, np.int32))
