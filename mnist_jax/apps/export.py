"""A trained classifier as a file that runs without mnist_jax or Flax: a `jax.export` artifact.

    mnist-jax export --out classifier.jaxexport              # the bundled weights
    mnist-jax export runs/quick --out quick.jaxexport --output logits

    import jax, numpy as np                                  # anywhere, with jax alone:
    exported = jax.export.deserialize(open("classifier.jaxexport", "rb").read())
    probabilities = exported.call(np.zeros((5, 28, 28, 1), np.uint8))   # (5, 10)

The artifact is serialized StableHLO with the params inside it, for any batch size N >= 1 (the
batch dimension is symbolic; jax.export's start at 1): uint8 images (N, 28, 28, 1) in, the ten
class probabilities (or logits) out, as float32. It runs on the platform it was exported on (`jax.default_backend()`); pass
`platforms` for others. Any network of `networks.NETWORKS` exports, as its `Model` computes it.

`--format onnx` (or an `--out` name ending .onnx) writes the same function as an ONNX model
through jax2onnx (the `onnx` extra), input "images" (N, 28, 28, 1) uint8, output "probabilities"
or "logits" (N, 10) float32. Whatever formulation the run trained with (`--conv`), the ONNX model
of a network that reads `--conv` (the CNN) computes it as "matmul" does, the same numbers in
MatMul, Slice and Max, which every ONNX runtime has: jax2onnx's max-pool of "xla" fails for these
shapes, and onnxruntime refuses the pooling that NNX's "xla" writes ("Unsupported pooling size").

    mnist-jax export --format onnx --out classifier.onnx
    import onnxruntime, numpy as np
    session = onnxruntime.InferenceSession("classifier.onnx")
    probabilities, = session.run(None, {"images": np.zeros((5, 28, 28, 1), np.uint8)})
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import jax
import jax.extend.core
import jax.numpy as jnp

from mnist_jax import networks
from mnist_jax.apps import drawing, novelty
from mnist_jax.config import TrainConfig
from mnist_jax.errors import UserError
from mnist_jax.fast import model_for
from mnist_jax.files import write_atomic
from mnist_jax.model import IMAGE_SHAPE, NUM_CLASSES, Model, Params

Output = Literal["probabilities", "logits"]
PAGE_DOUBT_OUTPUTS = ("doubt", "verdict")  # the page model's outputs where the run has a rule of doubt


def export_classifier(params: Params, model: Model, output: Output = "probabilities",
                      platforms: Sequence[str] | None = None) -> bytes:
    """The serialized `jax.export.Exported` of `model` with `params`: uint8 images (N, 28, 28, 1),
    N >= 1, to float32 (N, 10) probabilities or logits."""
    (batch,) = jax.export.symbolic_shape("batch")
    images = jax.ShapeDtypeStruct((batch, *IMAGE_SHAPE), jnp.uint8)
    return jax.export.export(jax.jit(_classify(params, model, output)), platforms=platforms)(images).serialize()


def export_onnx(params: Params, config: TrainConfig, output: Output = "probabilities") -> bytes:
    """The same function as an ONNX model (jax2onnx) of `config`'s network in the "matmul"
    formulation: input "images" uint8 (N, 28, 28, 1), N any; output `output`, float32 (N, 10)."""
    classify = _classify(params, _onnx_model(config), output)
    return _to_onnx(classify, jax.ShapeDtypeStruct(("B", *IMAGE_SHAPE), jnp.uint8), "mnist_jax_classifier",
                    ["images"], [output])


def export_page_onnx(params: Params, config: TrainConfig, rule: novelty.NoveltyRule | None = None) -> bytes:
    """The web page's ONNX model (mnist_jax.apps.web): input "ink" uint8 (PAD_SIZE, PAD_SIZE), a drawing's
    ink; outputs "digit", the uint8 (28, 28) input the model sees (drawing.to_digit), "probabilities",
    float32 (10,) and, with the run's `rule`, what `rule.doubt` says of that input: "doubt", float32
    (), its combined score less its threshold (> 0: doubted), and "verdict", int32 (): 0,
    novelty.UNSURE or novelty.NOT_A_DIGIT, as `mnist-jax predict` says them. The rule's references
    go in as float16 (6.4 MB for the CNN's 2,000 x 1,600), cast to float32 in the graph."""
    classify = _classify(params, _onnx_model(config), "probabilities")
    doubt = None if rule is None else _doubt(params, config, rule)

    def page(ink: jax.Array) -> tuple[jax.Array, ...]:
        digit = drawing.to_digit(ink)
        images = digit[None, :, :, None]
        probabilities = classify(images)
        if doubt is None:
            return digit, probabilities[0]
        margin, verdict = doubt(images, probabilities)
        return digit, probabilities[0], margin[0], verdict[0]

    return _to_onnx(page, jax.ShapeDtypeStruct((drawing.PAD_SIZE, drawing.PAD_SIZE), jnp.uint8), "mnist_jax_page",
                    ["ink"], ["digit", "probabilities", *([] if rule is None else PAGE_DOUBT_OUTPUTS)])


def page_features(config: TrainConfig):
    """(params, uint8 images) -> the features a run's rule reads, computed by its network as the ONNX
    model has it (`_onnx_model`): `novelty.features_for(config)`'s numbers, to float rounding; None
    where they cannot be read (then the run has no rule)."""
    return novelty.features_for(_onnx_config(config))


def _doubt(params: Params, config: TrainConfig, rule: novelty.NoveltyRule):
    """(uint8 images (1, 28, 28, 1), their probabilities (1, 10)) -> `novelty.doubt` of the rule's
    arrays and their `page_features`, traced here: while jax2onnx traces, nn.Dense's call and
    jax.numpy's functions are its own, which would hide from `novelty.feature_model` the layer it
    watches, and leave in the caches of the rule's jitted functions programs that only jax2onnx can run."""
    features = page_features(config)

    def doubt(images: jax.Array, probabilities: jax.Array) -> tuple[jax.Array, jax.Array]:
        return novelty.doubt(rule.head, jnp.asarray(rule.references), jnp.asarray(rule.knots), rule.doubt_above,
                             features(params, images), probabilities)

    traced = jax.make_jaxpr(doubt)(
        jax.ShapeDtypeStruct((1, *IMAGE_SHAPE), jnp.uint8), jax.ShapeDtypeStruct((1, NUM_CLASSES), jnp.float32))
    return jax.extend.core.jaxpr_as_fun(traced)


def format_for(out: Path, format: str | None) -> str:
    """The format an export writes: `format` as asked, else onnx for a file named .onnx, else jax."""
    return format or ("onnx" if out.suffix == ".onnx" else "jax")


def export_file(params: Params, config: TrainConfig, format: str, output: Output) -> tuple[bytes, str]:
    """The artifact of `format` ("jax" or "onnx") and a line of Python that loads and runs it."""
    if format == "onnx":
        return export_onnx(params, config, output), "onnxruntime.InferenceSession(path).run(None, {'images': images})"
    return (export_classifier(params, model_for(config), output),
            "jax.export.deserialize(open(path, 'rb').read()).call(images) (pip install jax flatbuffers)")


def write_file(out: Path, content: bytes) -> None:
    """Write an export to `out` whole; a UserError naming it if it cannot be written."""
    try:
        write_atomic(out, content)
    except OSError as e:
        raise UserError(f"{out}: cannot write ({e.strerror or e})") from None


def _onnx_config(config: TrainConfig) -> TrainConfig:
    """`config` for ONNX: in the "matmul" formulation where its network reads `conv`
    (networks.NETWORKS); a network without formulations is built as it is."""
    if "conv" in networks.NETWORKS[config.network].reads:
        return dataclasses.replace(config, conv="matmul")
    return config


def _onnx_model(config: TrainConfig) -> Model:
    return model_for(_onnx_config(config))


def _register_jax_and_flax_converters() -> None:
    """jax2onnx's converters of JAX's and Flax's operations, which these models need. Its first
    conversion would import every plugin it ships, Equinox's and its example models' too: `mnist-jax
    export` took 3.9 s with them all and 2.5 s with these, writing the same bytes (2 AMD EPYC Zen 4
    cores, jax2onnx 0.17). Where its plugin system differs from that version's, it imports them all."""
    from jax2onnx.plugins import plugin_system

    if getattr(plugin_system, "_already_imported_plugins", True) or not hasattr(plugin_system, "_import_tree"):
        return
    root = Path(plugin_system.__file__).parent
    for tree in ("jax", "flax"):
        plugin_system._import_tree(root / tree, f"jax2onnx.plugins.{tree}")
    plugin_system._already_imported_plugins = True


def _to_onnx(function, example: jax.ShapeDtypeStruct, name: str, inputs: list[str], outputs: list[str]) -> bytes:
    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise UserError("an ONNX export needs jax2onnx, which the core install leaves out: "
                        "pip install -e '.[onnx]' from a clone of mnist-jax") from None
    _register_jax_and_flax_converters()
    # onnx_ir warns once per shape constant it writes without a type; the model is unaffected.
    logger = logging.getLogger("onnx_ir")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        proto = to_onnx(function, [example], model_name=name, input_names=inputs, output_names=outputs)
    finally:
        logger.setLevel(level)
    return proto.SerializeToString()


def _classify(params: Params, model: Model, output: Output):
    params = jax.tree_util.tree_map(jnp.asarray, params)

    def classify(images: jax.Array) -> jax.Array:
        logits = model.apply(params, images)
        return jax.nn.softmax(logits, -1) if output == "probabilities" else logits

    return classify
