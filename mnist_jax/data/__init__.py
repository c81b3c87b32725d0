"""MNIST and Fashion-MNIST through tensorflow-datasets, with no TensorFlow and no network.

Each dataset is declared once, as a `Dataset` in `DATASETS`: its IDX files, their SHA-256, its class
names and where its files are by default. MNIST's four IDX files ship inside the package
(`mnist_jax/mnist/`); Fashion-MNIST's come from Debian's `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist), or any directory given as `manual_dir`. `prepare()` checks the
files and writes them once into the TFDS data dir as the dataset's own TFDS dataset (`mnist_idx`,
`fashion_mnist_idx`; ArrayRecord); `load_split()` reads a split back through `tfds.data_source` as
numpy arrays.

    from mnist_jax import data
    data.prepare()                                  # ~4 s the first time, then a no-op
    images, labels = data.load_split("train")       # uint8 (60000, 28, 28, 1), int32 (60000,)
    images, labels = data.load("test")              # both steps in one call
    images, labels = data.load("test", dataset="fashion_mnist")
    data.DATASETS["fashion_mnist"].class_names      # ("T-shirt/top", "Trouser", ...)

The data dir is TFDS's own (`~/tensorflow_datasets`, or `$TFDS_DATA_DIR`) unless `data_dir` is
given. The stock TFDS `mnist` and `fashion_mnist` builders are not used: they need TensorFlow to
prepare and accept only their own gzip bytes. Ours have their own names, so they never touch a
stock dataset beside them.
"""

from mnist_jax.data.datasets import DATASETS, FASHION_MNIST, IDX_FILE_LIST, MNIST, SPLITS, Dataset, dataset_of  # noqa: F401


def __getattr__(name: str):
    """`prepare`, `load_split`, `load`, `DataError`, ... from mnist_jax.data.loading, imported on first
    use: it imports TFDS (about a second), which reading a saved run or a picture never needs."""
    import importlib

    try:
        return getattr(importlib.import_module("mnist_jax.data.loading"), name)
    except AttributeError:
        raise AttributeError(f"module 'mnist_jax.data' has no attribute {name!r}") from None
