"""The datasets, each declared once: its files and their SHA-256s, its class names, where its files are.

    from mnist_jax.data.datasets import DATASETS
    DATASETS["fashion_mnist"].class_names[0]       # "T-shirt/top"

Reading and preparing them through TFDS is mnist_jax.data's; this module imports nothing heavy,
so that predict, the demo and the figures name a run's classes without loading TFDS.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from pathlib import Path

SPLITS = ("train", "test")

# (images file, labels file, examples) per split: MNIST's names, which Fashion-MNIST kept.
MNIST_STYLE_FILES = types.MappingProxyType({
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
})


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset of 28x28 gray images in ten classes, stored as four IDX files.

    A new one is one more `Dataset` in `DATASETS` and its name in `config.DatasetName`; its TFDS
    builder is made from the declaration.
    """

    name: str  # the --dataset value; the TFDS dataset is `{name}_idx`
    title: str  # how messages and output name it
    idx_files: Mapping[str, tuple[str, str, int]]  # split -> (images file, labels file, examples)
    sha256: Mapping[str, str]  # file name -> SHA-256 of its decompressed content, this dataset's
    class_names: tuple[str, ...]  # label i is class_names[i]
    source_dir: Path  # where its IDX files are when no manual dir is given
    how_to_get: str  # what to do when source_dir is absent, in words
    description: str = ""
    thing: str = "digit"  # what each picture shows: a run's doubt says "not a digit"
    homepage: str = ""
    license: str = ""

    @property
    def tfds_name(self) -> str:
        return f"{self.name}_idx"

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(name for split in SPLITS for name in self.idx_files[split][:2])


IDX_FILE_LIST = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                  "t10k-labels-idx1-ubyte (each optionally .gz)")

MNIST = Dataset(
    name="mnist",
    title="MNIST",
    idx_files=MNIST_STYLE_FILES,
    # As in the bundled SHA256SUMS.
    sha256=types.MappingProxyType({
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    }),
    class_names=tuple(str(digit) for digit in range(10)),
    source_dir=Path(__file__).parent.parent / "mnist",
    how_to_get=f"reinstall mnist-jax, whose package holds them, or pass --manual-dir DIR with {IDX_FILE_LIST}",
    description="The MNIST handwritten digits, read from the original IDX files.",
    homepage="http://yann.lecun.com/exdb/mnist/",
    license="CC BY-SA 3.0",
)

FASHION_MNIST = Dataset(
    name="fashion_mnist",
    title="Fashion-MNIST",
    idx_files=MNIST_STYLE_FILES,
    # Of the files that Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1 installs.
    sha256=types.MappingProxyType({
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    }),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
    source_dir=Path("/usr/share/datasets/fashion-mnist"),
    how_to_get=f"install them with `apt-get install dataset-fashion-mnist`, or pass --manual-dir DIR with "
               f"{IDX_FILE_LIST}",
    description="Fashion-MNIST, Zalando's article images, read from the original IDX files.",
    thing="fashion article",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    license="MIT",
)

# Name -> declaration, in the order the command line lists them. config.DatasetName lists the same names.
DATASETS: Mapping[str, Dataset] = types.MappingProxyType({d.name: d for d in (MNIST, FASHION_MNIST)})

def dataset_of(dataset: str | Dataset) -> Dataset:
    """The declaration of `dataset`: a name in DATASETS, or a Dataset (e.g. a copy made with
    dataclasses.replace) whose name is one."""
    if isinstance(dataset, Dataset):
        if dataset.name not in DATASETS:
            raise ValueError(f"dataset {dataset.name!r} is not in data.DATASETS")
        return dataset
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {tuple(DATASETS)}, got {dataset!r}")
    return DATASETS[dataset]
