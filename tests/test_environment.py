import subprocess
import sys

import pytest

from mnist_jax import cli
from mnist_jax.errors import UserError
from mnist_jax.run import environment


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


def test_the_system_record_says_what_decides_the_bits(monkeypatch):
    here = environment.system_info(1.5)
    for name in ("backend", "device", "jax", "cpu", "cpu_threads", "processes", "devices", "train_seconds",
                 "peak_device_bytes", *environment.NUMERICS_FIELDS):
        assert name in here, name
    assert set(environment.numerics_key(here)) == set(environment.NUMERICS_FIELDS)
    assert "train_seconds" not in environment.numerics_key(here)
    known = all(here[name] is not None for name in environment.NUMERICS_FIELDS)  # /proc/cpuinfo read
    assert environment.same_numerics(here, here) == known
    assert environment.same_numerics(here) == known  # this process, recorded again
    assert environment.same_numerics({**here, "train_seconds": 2.0, "peak_device_bytes": 1}, here) == known
    if here["cpu_isa"] is not None:
        assert here["cpu_isa"] == sorted(here["cpu_isa"]) and set(here["cpu_isa"]) <= environment.CODEGEN_ISA
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    assert environment.system_info(0.0)["xla_flags"] == "--xla_cpu_enable_fast_math=true"


@pytest.mark.parametrize("name", environment.NUMERICS_FIELDS)
def test_a_record_differing_in_or_lacking_a_deciding_field_is_not_the_same_numerics(name):
    here = {"backend": "cpu", "device": "cpu", "jax": "0.10.2", "jaxlib": "0.10.2", "xla_flags": "",
            "arch": "x86_64", "cpu": "AMD EPYC", "cpu_vendor": "AuthenticAMD", "cpu_family": "25",
            "cpu_model_number": "17", "cpu_isa": ["avx", "avx2", "fma"], "cpu_threads": 2, "processes": 1,
            "devices": 1, "train_seconds": 1.0, "peak_device_bytes": None}
    assert environment.same_numerics(dict(here), here)
    other = {"cpu_isa": ["avx", "avx2", "avx512f", "fma"], "cpu_threads": 4}.get(name, "other")
    assert not environment.same_numerics({**here, name: other}, here)
    assert not environment.same_numerics({k: v for k, v in here.items() if k != name}, here)  # an older record
    assert not environment.same_numerics({**here, name: None}, here)  # not known there
