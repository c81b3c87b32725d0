"""A trained model on a static web page: a drawing pad that runs the model in the browser, with no
server behind it (GitHub Pages, any static host, or `python -m http.server` on a laptop).

    npm install                      # onnxruntime-web, pinned in package.json (ORT_VERSION)
    mnist-jax export --format web --out site --ort-dir node_modules/onnxruntime-web/dist
    python -m http.server -d site 8000      # then open http://127.0.0.1:8000

The site: the page (mnist_jax/page/: index.html, pad.js, app.js, style.css), model.onnx, manifest.json (the
run, its test accuracy, its dataset's class names, its threshold of "unsure") and, with --ort-dir,
onnxruntime-web's WebAssembly build in ort/ (about 15 MB, 3.8 MB gzipped), so that the page works
with no network at all. Without --ort-dir the page loads that build from ORT_CDN, the script checked
by its subresource integrity. model.onnx is one graph exported from JAX: the drawing made MNIST-like
(mnist_jax.apps.drawing.to_digit, as `mnist-jax predict` reads a drawing) and the classifier
(export.export_onnx's function), so the page and Python see the same 28x28 input.
A browser refuses to load the model from a file:// page: serve the folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from mnist_jax.errors import UserError
from mnist_jax.files import read_regular

ORT_VERSION = "1.31.1"
# onnxruntime-web's WebAssembly-only build, the three files the page loads, with the SHA-384 of
# each as npm publishes version ORT_VERSION: a copy given by --ort-dir must match them all, and the
# script's is its integrity on ORT_CDN. (ort.min.js would also ask for the WebGPU build's files.)
ORT_FILES = {
    "ort.wasm.min.js": "tNxIwEqSlcdvKtUte98AsccPbDKM958LBXB/+3BLS42TTihXHKTWgdqPqXI/lot8",
    "ort-wasm-simd-threaded.mjs": "L9olMNCg9w3FaNhr+m7EAeeiUpM5zy2Nlh6APnoogtFXjsL4ZZZRXlYhSVJc1r3j",
    "ort-wasm-simd-threaded.wasm": "bQJgW/bZhNOlc9KU45Zu0dyd0EFfNpkOZjfHyH/90dkZQSBBGkFTsAJaabSyYA4Z",
}
ORT_SCRIPT = "ort.wasm.min.js"
ORT_CDN = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_VERSION}/dist/"
ORT_FOLDER = "ort"
ORT_MAX_BYTES = 64_000_000  # the .wasm is 14.8 MB; nothing larger is read as one of these files
PAGE_FILES = ("index.html", "pad.js", "app.js", "style.css")
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
WRITTEN_BY = "mnist-jax export --format web"  # in the manifest: a later export may replace such a site


def sha384(content: bytes) -> str:
    return base64.b64encode(hashlib.sha384(content).digest()).decode()


def read_ort_dir(ort_dir: Path) -> dict[str, bytes]:
    """onnxruntime-web's files from `ort_dir`, each checked to be version ORT_VERSION's."""
    install = f"npm install onnxruntime-web@{ORT_VERSION} and pass --ort-dir node_modules/onnxruntime-web/dist"
    files = {}
    for name, digest in ORT_FILES.items():
        path = ort_dir / name
        try:
            files[name] = read_regular(path, ORT_MAX_BYTES)
        except FileNotFoundError:
            raise UserError(f"{path}: not found; {install}") from None
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror or e}); {install}") from None
        if sha384(files[name]) != digest:
            raise UserError(f"{path}: not onnxruntime-web {ORT_VERSION}'s (its SHA-384 differs); {install}")
    return files


def check_site_dir(directory: Path, *, apart_from: Path) -> None:
    """A UserError unless `directory` may become the site: new, empty, or a site written by this
    command (which is then replaced whole), and not inside the run it is made from."""
    if directory.is_symlink():
        raise UserError(f"{directory}: is a symbolic link; give the folder itself, or a new name")
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory}: is a file; give a folder for the site (new, empty, or an earlier site)")
    try:
        inside = directory.resolve().is_relative_to(apart_from.resolve())
    except OSError:
        inside = False
    if inside:
        raise UserError(f"{directory}: is inside {apart_from}, the run it is made from; write it elsewhere")
    if directory.is_dir() and any(directory.iterdir()) and _written_by(directory) != WRITTEN_BY:
        raise UserError(f"{directory}: holds files that are not a site of {WRITTEN_BY}; "
                        f"give a new or empty folder")


def _written_by(directory: Path) -> Any:
    try:
        return json.loads(read_regular(directory / MANIFEST_FILE, 1_000_000)).get("written_by")
    except (OSError, ValueError, AttributeError):
        return None


def manifest(config: Any, history: dict[str, Any], unsure_below: float | None, run: str) -> dict[str, Any]:
    """manifest.json: what the page says of the run named `run` (a `TrainConfig`, its history and
    its threshold of "unsure", None for a run older than it) and the pad's sizes."""
    from mnist_jax.apps import drawing
    from mnist_jax.data.datasets import DATASETS

    return {"run": run, "dataset": config.dataset, "class_names": list(DATASETS[config.dataset].class_names),
            "test_accuracy": history["test_accuracy"][-1] if history["test_accuracy"] else None,
            "unsure_below": unsure_below, "pad": drawing.PAD_SIZE, "brush": drawing.BRUSH_SIZE}


def site_files(model_onnx: bytes, manifest: dict[str, Any], ort_files: dict[str, bytes] | None) -> dict[str, bytes]:
    """The site's files by relative path: the page, the model, the manifest and, when given,
    onnxruntime-web's files in ORT_FOLDER (else the page loads them from ORT_CDN)."""
    page = resources.files("mnist_jax") / "page"
    files = {name: (page / name).read_bytes() for name in PAGE_FILES}
    if ort_files is None:
        script = (f'<script src="{ORT_CDN}{ORT_SCRIPT}" integrity="sha384-{ORT_FILES[ORT_SCRIPT]}" '
                  f'crossorigin="anonymous"></script>')
        where = ORT_CDN
    else:
        script = f'<script src="{ORT_FOLDER}/{ORT_SCRIPT}"></script>'
        where = f"{ORT_FOLDER}/"
        files.update({f"{ORT_FOLDER}/{name}": content for name, content in ort_files.items()})
    files["index.html"] = files["index.html"].replace(b"ORT_SCRIPT", script.encode())
    manifest = {**manifest, "written_by": WRITTEN_BY, "model": MODEL_FILE,
                "ort": {"version": ORT_VERSION, "script": where + ORT_SCRIPT, "files": where}}
    files[MODEL_FILE] = model_onnx
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode()
    return files


def write_run_site(directory: Path, params: Any, config: Any, manifest: dict[str, Any],
                   ort_files: dict[str, bytes] | None) -> dict[str, bytes]:
    """The site of a run's `params` and `config` (a `TrainConfig`), written whole into `directory`;
    its files. A UserError naming `directory` if it cannot be written."""
    from mnist_jax.apps.export import export_page_onnx

    files = site_files(export_page_onnx(params, config), manifest, ort_files)
    try:
        write_site(directory, files)
    except OSError as e:
        raise UserError(f"{directory}: cannot write ({e.strerror or e})") from None
    return files


def site_summary(directory: Path, files: dict[str, bytes], params: str, ort_copied: bool) -> str:
    """What a written site holds (`params`: which params its model has) and how to open it."""
    import shlex

    ort = (f"onnxruntime-web {ORT_VERSION} in {ORT_FOLDER}/" if ort_copied
           else f"onnxruntime-web {ORT_VERSION} from {ORT_CDN}, checked by its SHA-384")
    return (f"{directory} ({sum(map(len, files.values())) / 1e6:.1f} MB: the page, {MODEL_FILE} "
            f"({len(files[MODEL_FILE]) / 1e3:.0f} kB) with the {params}, {ort}); "
            f"serve it, e.g. python -m http.server -d {shlex.quote(str(directory))} 8000, and open "
            f"http://127.0.0.1:8000 (a browser will not load its model from a file:// page)")


def write_site(directory: Path, files: dict[str, bytes]) -> None:
    """Write the site into `directory` whole: built in a folder beside it, then renamed into place,
    so that the folder holds the earlier site or all of the new one, never a mixture."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".building"))
    old = None
    try:
        for name, content in files.items():
            (building / name).parent.mkdir(parents=True, exist_ok=True)
            (building / name).write_bytes(content)
            os.chmod(building / name, 0o644)
        os.chmod(building, 0o755)  # mkdtemp's 0700 would keep a web server's user out
        if directory.is_dir() and any(directory.iterdir()):  # an earlier site, checked by check_site_dir
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".old"))
            os.replace(directory, old / "site")
        os.replace(building, directory)  # onto nothing, or onto an empty folder
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        if old is not None and not directory.exists():
            os.replace(old / "site", directory)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
