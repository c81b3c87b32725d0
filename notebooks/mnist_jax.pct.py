# ---
# jupyter:
#   jupytext:
#     formats: ipynb,.pct.py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Artificial Neural Networks (MNIST), in JAX
#
# The PyTorch MNIST notebook, cell for cell, with `mnist_jax`: the same CNN, hyperparameters,
# per-epoch lines and figures. Each cell calls the package instead of copying it; the markdown
# says what JAX does differently and why.
#
# The outputs stored here come from a full run of this notebook (30 epochs on the 2-core CPU of
# this project's machine, JAX 0.10.2). Set `MNIST_JAX_NOTEBOOK_QUICK=1` in the environment to run
# it as the tests do: one small epoch on 1,024 digits (batches of 256, learning rate 1e-3).
#
# Setup: `pip install -e ".[notebook]"` in a clone of the repository, then open this notebook in Jupyter.

# %% [markdown]
# ## Import modules
#
# No global seed: JAX draws randomness only from explicit keys (`jax.random.key(seed)`), which the
# model's initialisation and each epoch's shuffle derive from the config's `seed`. Instead of
# `device = "cuda"`, JAX places arrays on its default device: the GPU when `jax[cuda12]` is
# installed and a GPU is there, else the CPU.

# %%
import os

import jax

from mnist_jax import data, steps
from mnist_jax.apps import plotting
from mnist_jax.config import TrainConfig
from mnist_jax.fast import model_for, programs
from mnist_jax.networks import model_summary
from mnist_jax.run import environment, history

# %matplotlib inline
# %config InlineBackend.figure_formats = ["svg"]
environment.configure()  # GPU memory on demand; a persistent compilation cache so reruns skip compiling
print(f"JAX {jax.__version__} on {jax.default_backend()}: {jax.devices()[0].device_kind}")

# %% [markdown]
# ## Where the data lives (the original mounted Google Drive)
#
# The four MNIST IDX files ship inside the package: `data.prepare` turns them into a TFDS dataset
# once (in `$TFDS_DATA_DIR`, default `~/tensorflow_datasets`), offline and without TensorFlow.

# %%
print(data.prepare())  # where the prepared dataset is

# %% [markdown]
# ## Set hyperparameters
#
# One frozen config object instead of module-level variables; its defaults are the notebook's
# (30 epochs, Adam at 1e-4, batches of 512, test batches of 1024, seed 0).

# %%
QUICK = os.environ.get("MNIST_JAX_NOTEBOOK_QUICK") == "1"
config = TrainConfig()
if QUICK:  # the tests' setting: one small epoch (their compiled programs are reused from the cache)
    config = TrainConfig(epochs=1, batch_size=256, learning_rate=1e-3, train_examples=1024, test_examples=1024)
config

# %% [markdown]
# ## Construct data pipeline
#
# No `DataLoader`: the whole dataset (47 MB of uint8) is put on the device once, and each epoch
# gathers its shuffled batches there, inside one compiled program. `ToTensor`'s scaling to [0, 1]
# happens in the model's input (`model.to_float`).

# %%
train_images, train_labels = (jax.device_put(a[: config.train_examples]) for a in data.load("train"))
test_images, test_labels = (jax.device_put(a[: config.test_examples]) for a in data.load("test"))
classes = tuple(str(c) for c in range(10))
print(train_images.shape, train_images.dtype, test_images.shape)

# %% [markdown]
# ## Define a model
#
# `Classifier` (`mnist_jax/model.py`, one screen) is a Flax linen module: conv(1->32, 3x3), ReLU,
# max-pool 2, conv(32->64, 3x3), ReLU, max-pool 2, flatten, linear(1600->10), as the PyTorch class.
# It holds no weights: they live in a separate tree of arrays (`params`), passed to `apply` on
# every call. Images are NHWC (28, 28, 1) where PyTorch's are NCHW. `model_for` builds the
# network the config names (`config.network`, this CNN) and wraps it in the two pure functions
# everything else calls, `init(key)` and `apply(params, uint8_images)`.

# %%
classifier = model_for(config)
classifier

# %% [markdown]
# ## Initialize the model and optimizer
#
# The state of training is one immutable value: params, Adam's moments, the step count and the
# random key of the next shuffle. Weights are initialised as PyTorch's defaults do (uniform in
# +-1/sqrt(fan_in)), so the learning curve follows the notebook's.

# %%
steps_per_epoch = steps.num_batches(len(train_labels), config.batch_size)
state = programs.initial_state(config)
print(model_summary(state.params))

# %% [markdown]
# ## Define the training procedure
#
# `programs.run_epoch(compiled, state, images, labels) -> (state, metrics)` is the epoch that every
# caller trains, the package's own loop included: shuffle with the state's key, then a `lax.scan`
# of `steps.train_step` over the batches, the last one padded and masked so that its loss is the
# mean over its real examples (PyTorch's `drop_last=False`). `programs.train_programs` compiles those
# pure steps once with `jax.jit`, with the optimizer of `optimizer.make_optimizer` (the notebook's
# `optax.adam(1e-4)`), the old state's buffers donated to the new one. On a CPU each
# batch's gradient is computed in slices of 32 digits, whose activations stay in the cache
# (`programs.gradient_slices`; the same gradient up to float rounding).

# %%
compiled = programs.train_programs(config, steps_per_epoch)

# %% [markdown]
# ## Define the testing procedure
#
# `steps.evaluate(params, images, labels)` scans the test set in batches of `test_batch_size`: the
# per-batch loss sums and correct counts (and a confusion matrix), exact whatever the batch size.
# `programs.eval_program` is it, jitted.

# %%
evaluate = programs.eval_program(classifier, steps.eval_batch_size(config.test_batch_size, len(test_labels)))

# %% [markdown]
# ## Train the model
#
# Each epoch is one dispatch to the device; the metrics come back to the host to be printed in the
# notebook's format. Train loss and accuracy are accumulated as the notebook does (each batch's
# mean loss times its size, summed and divided by the dataset's size, during the epoch).

# %%
hist = history.empty()
for epoch in range(config.epochs):
    state, train_metrics = programs.run_epoch(compiled, state, train_images, train_labels)
    test_metrics, confusion = evaluate(state.params, test_images, test_labels)
    record = history.epoch_record(*jax.device_get((train_metrics, test_metrics, confusion)), seconds=0.0,
                                  learning_rate=config.learning_rate)
    hist = history.append(hist, record)
    print(history.format_epoch(epoch, record), flush=True)

# %% [markdown]
# ## Plot training result

# %%
plotting.plot_history(hist)  # a matplotlib Figure, shown inline as SVG

# %% [markdown]
# ## Plot classification result
#
# Six random test digits, drawn with an explicit key where the original used `torch.randint`.

# %%
plotting.classification_sample(state.params, classifier, jax.device_get(test_images), jax.device_get(test_labels),
                               jax.random.key(config.seed), size=(2, 3))

# %% [markdown]
# ## The same model in Flax NNX
#
# Flax's newer API, NNX, writes a model as an object that holds its parameters, as PyTorch's
# `nn.Module` does. `mnist_jax.model_nnx.Classifier` is this notebook's network so, with the same
# layer and parameter names and shapes as the linen module above; `to_params` and `with_params`
# move the params between the two, so one params file serves both:
#
# ```python
# from flax import nnx
# from mnist_jax import model_nnx
#
# twin = model_nnx.with_params(model_nnx.Classifier(rngs=nnx.Rngs(0)), state.params)
# logits = twin(test_images[:6] / 255.0)   # the linen model's logits, called like PyTorch's
# ```
#
# `TrainConfig(model="nnx")` trains the NNX form through the same pure steps, to the same numbers.

# %% [markdown]
# ## Discussion
#
# The same network and hyperparameters as the PyTorch notebook, trained the same way: the curves
# fall and the test accuracy passes 0.98, as the original's 0.9836 after 30 epochs. The numbers
# differ slightly from PyTorch's (other random draws, other float rounding), not in kind. On the
# same machine, the same config gives the same history bit for bit: this notebook's last line is
# the last line of `python scripts/train.py` and of the weights shipped in the package.
#
# The cells above are the training loop written out. The package's own loop adds what a long run
# needs (checkpoints, resume, a progress bar, Ctrl-C, the run's files), in one call:
# `mnist_jax.run.experiment.run(config, "runs/notebook")` trains and writes the run as
# `python scripts/train.py` does, printing the same lines.
