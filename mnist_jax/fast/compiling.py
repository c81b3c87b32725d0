"""How hard XLA optimises a program: fully where a run repeats it long enough to repay the compile
time, quickly where it runs once or briefly (the init, the evaluation, a short run's epoch, the rule
of doubt, predictions, explanations). Either way the same bits where compared (tests/test_fast.py).

    classify = quick_jit(classify_fn, static_argnames="model")     # jax.jit, compiled quickly
    @quick_jit(static_argnames="model")                            # the same, as a decorator
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

# XLA:CPU's older fusion emitters. On 2 AMD EPYC Zen 4 cores (JAX 0.10.2) an epoch program compiled
# in 0.5 s instead of 0.9 and ran 64-image steps as fast, 512-image steps 13% slower (83 against 73
# ms); the 10,000-image evaluation compiled in 0.4 s instead of 0.7 and ran as fast. The same bits
# in every formulation and batch size compared there (tests/test_fast.py).
QUICK_COMPILE = {"cpu": {"xla_cpu_use_fusion_emitters": False}}
# Programs that mostly draw random numbers (the init, the rule of doubt's made pictures) also get
# LLVM's level 1: threefry's unrolled rounds compiled in 0.5 s instead of 1.8, the same bits. Not the
# others: it changed the last bits of `--conv xla`'s steps.
RANDOM_NUMBERS_COMPILE = {"cpu": {**QUICK_COMPILE["cpu"], "xla_backend_optimization_level": 1}}

# A run of at most this many train steps in all compiles its epoch program quickly: the 0.4 s it
# saves outweighs the at most 10 ms a 512-image step loses (above).
QUICK_RUN_STEPS = 40


def quick_options(random_numbers: bool = False) -> dict | None:
    """The compiler options of a quickly compiled program on this backend (None: XLA's defaults)."""
    return (RANDOM_NUMBERS_COMPILE if random_numbers else QUICK_COMPILE).get(jax.default_backend())


def quick_jit(fn: Callable | None = None, *, random_numbers: bool = False, **jit_args) -> Callable:
    """`jax.jit(fn, **jit_args)`, compiled quickly (QUICK_COMPILE, or RANDOM_NUMBERS_COMPILE); also a
    decorator, with or without arguments. Called inside another program, `fn` becomes part of it,
    compiled as that one is. The backend is asked at the first call, not at import (a module's
    functions are jitted before `environment.configure` has chosen the platform)."""
    if fn is None:
        return functools.partial(quick_jit, random_numbers=random_numbers, **jit_args)

    @functools.cache
    def jitted() -> Callable:
        return jax.jit(fn, compiler_options=quick_options(random_numbers), **jit_args)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((args, kwargs))):
            return fn(*args, **kwargs)  # XLA takes compiler options only for a whole program
        return jitted()(*args, **kwargs)

    call.lower = lambda *args, **kwargs: jitted().lower(*args, **kwargs)
    return call
