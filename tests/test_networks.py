"""mnist_jax.networks: the model a config trains, the networks it can name, the summary of any params."""


import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from conftest import init_params

from mnist_jax import choices, model_nnx, networks
from mnist_jax.config import Choice, TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fast import model_for
from mnist_jax.fast.cnn import Classifier as FastClassifier
from mnist_jax.fast.kernels import resolve_conv_impl
from mnist_jax.fast.programs import eval_program
from mnist_jax.model import NUM_CLASSES, Classifier, LinenModel
from mnist_jax.networks import count_params, model_summary, param_shapes


class MLP(nn.Module):
    """A tiny two-layer perceptron: another network, as docs/extending.md writes one."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Dense(8, name="hidden")(x.reshape(x.shape[0], -1)))
        return nn.Dense(NUM_CLASSES, name="out")(x)


MLP_NETWORK = Choice(lambda config: LinenModel(MLP()), reads=("model",))


def test_a_network_the_config_does_not_declare_cannot_be_asked_for():
    assert TrainConfig().network == "cnn"
    with pytest.raises(ConfigError, match=r"^network must be cnn or cnn_bn, got 'mlp'$"):
        TrainConfig(network="mlp")


def test_the_config_builds_the_cnn_in_either_flax_api():
    auto = resolve_conv_impl("auto")  # the backend's fastest: custom_vjp on a CPU
    assert model_for(TrainConfig()) == LinenModel(FastClassifier(auto) if auto != "xla" else Classifier())
    assert model_for(TrainConfig(conv="xla", precision="highest")) == LinenModel(Classifier("highest"))
    assert model_for(TrainConfig(model="nnx", conv="xla")) == model_nnx.NnxModel()



def test_equal_configs_build_models_that_share_one_compiled_program():
    """A model is a static argument of the jitted programs, which are cached on it: two builds of one
    config reuse the program, another formulation gets its own."""
    program = eval_program(model_for(TrainConfig()), 256)
    assert eval_program(model_for(TrainConfig()), 256) is program
    assert eval_program(model_for(TrainConfig(conv="xla")), 256) is not program


def test_a_setting_the_network_does_not_read_is_refused_unless_left_at_its_default(monkeypatch):
    monkeypatch.setattr(networks, "NETWORKS", {**networks.NETWORKS, "mlp": MLP_NETWORK})
    config = TrainConfig(model="linen")
    object.__setattr__(config, "network", "mlp")  # as if "mlp" were in config.Network
    choices.check(config)
    assert model_for(config) == LinenModel(MLP())
    for setting, value in (("conv", "xla"), ("precision", "highest")):
        changed = dataclasses.replace(config, network="cnn", **{setting: value})
        object.__setattr__(changed, "network", "mlp")
        with pytest.raises(ConfigError, match=rf"^--{setting} {value} has no effect without --network cnn"):
            choices.check(changed)


def test_the_summary_lists_any_params_and_their_total():
    params = init_params(LinenModel(MLP()))
    assert count_params(params) == 784 * 8 + 8 + 8 * 10 + 10
    assert model_summary(params).splitlines() == [
        "Model Structure",
        "  hidden.bias    (8,)          8",
        "  hidden.kernel  (784, 8)  6,272",
        "  out.bias       (10,)        10",
        "  out.kernel     (8, 10)      80",
        "Total parameters: 6,370",
    ]
    assert model_summary({"w": jnp.zeros((2, 3)), "blocks": [{"b": jnp.zeros(4)}]}).splitlines()[1:] == [
        "  blocks.0.b  (4,)    4", "  w           (2, 3)  6", "Total parameters: 10"]


@pytest.mark.parametrize("form", ["linen", "nnx"])
def test_the_cnns_shapes_computing_nothing_and_its_summary(form):
    config = TrainConfig(model=form)
    shapes = param_shapes(config)
    params = init_params(model_for(config))
    assert jax.tree_util.tree_map(lambda s: (s.shape, s.dtype), shapes) == \
           jax.tree_util.tree_map(lambda p: (p.shape, p.dtype), params)
    assert count_params(params) == 34_826
    summary = model_summary(shapes)
    assert summary == model_summary(params)
    assert "  conv1.kernel   (3, 3, 1, 32)      288" in summary.splitlines()
    assert summary.endswith("Total parameters: 34,826")


@pytest.mark.parametrize("conv", ["matmul", "custom_vjp", "xla"])
def test_precision_reaches_every_matmul_and_the_config_builds_the_model(conv):
    """On a CPU every precision computes the same numbers, so only the program shows it; on a GPU a
    matmul left at the default would run in TF32."""
    model = model_for(TrainConfig(conv=conv, precision="highest"))
    assert model == LinenModel(FastClassifier(conv, "highest") if conv != "xla" else Classifier("highest"))
    params = init_params(model)
    images = jnp.zeros((2, 28, 28, 1), jnp.uint8)
    jaxpr = str(jax.make_jaxpr(model.apply)(params, images))
    # Both convolutions and the dense layer carry the precision; nothing is left at the default.
    assert jaxpr.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == 3, jaxpr
    with jax.default_matmul_precision("default"):  # as a run has it (the tests set highest on a GPU)
        default = str(jax.make_jaxpr(model_for(TrainConfig(conv=conv)).apply)(params, images))
    assert "Precision.HIGHEST" not in default
    # And every matmul and convolution of the gradient, the hand-written ones included.
    grad = str(jax.make_jaxpr(jax.grad(lambda p: model.apply(p, images).sum()))(params))
    ops = grad.count("dot_general[") + grad.count("conv_general_dilated[")
    assert ops >= 8 and grad.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == ops, grad
