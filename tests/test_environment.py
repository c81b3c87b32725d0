import subprocess
import sys

import pytest

from mnist_jax import cli, environment
from mnist_jax.errors import UserError


def test_configure_turns_gpu_preallocation_off_and_keeps_a_users_choice():
    code = ("import os; from mnist_jax import environment; environment.configure(compile_cache=None); "
            "print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])")
    for env, expected in (({}, "false"), ({"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}, "true")):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                                env={"PATH": "/usr/bin:/bin", **env})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


def test_the_compile_cache_follows_the_environment_unless_given(monkeypatch, tmp_path):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "env"))
    assert environment.default_compile_cache() == str(tmp_path / "env")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert environment.default_compile_cache() == str(tmp_path / "xdg" / "mnist-jax" / "jax-compile")


COMMANDS = [["train"], ["evaluate", "RUN"], ["predict", "x.png", "--run", "RUN"], ["plot-history", "RUN"],
            ["plot-classification", "RUN"], ["plot-errors", "RUN"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=[a[0] for a in COMMANDS])
def test_every_command_configures_jax_before_anything_else(argv, monkeypatch, capsys, tmp_path):
    calls = []

    def configure(**kwargs):
        calls.append(kwargs)
        raise UserError("configured")

    monkeypatch.setattr(environment, "configure", configure)
    assert cli.execute([*argv, "--compile-cache", str(tmp_path)]) == 2
    assert calls == [{"compile_cache": str(tmp_path), "distributed": None}]
    assert capsys.readouterr().err == f"mnist-jax {argv[0]}: error: configured\n"
