"""A trained model on a static web page: a drawing pad that runs the model in the browser, with no
server behind it (GitHub Pages, any static host, or `python -m http.server` on a laptop).

    npm install                      # onnxruntime-web, pinned in package.json (ORT_VERSION)
    mnist-jax export --format web --out site --ort-dir node_modules/onnxruntime-web/dist
    python -m http.server -d site 8000      # then open http://127.0.0.1:8000

The site: the page (mnist_jax/page/: index.html, pad.js, app.js, style.css), model.onnx, manifest.json (the
run, its test accuracy, its dataset's class names, its threshold of "unsure" or its model's codes of
"unsure" and "not a digit") and, with --ort-dir, onnxruntime-web's WebAssembly build in ort/ (about
15 MB, 3.8 MB gzipped), so that the page works with no network at all. Without --ort-dir the page
loads that build from ORT_CDN, the script checked by its subresource integrity. model.onnx is one
graph exported from JAX: the drawing made MNIST-like (mnist_jax.apps.drawing.to_digit, as
`mnist-jax predict` reads a drawing) and the classifier (export.export_onnx's function), so the page
and Python see the same 28x28 input; where the run has a rule of doubt (apps/novelty.py), the graph
computes it too, and the page says "Not a digit" or "Unsure" where `mnist-jax predict` does.
A browser refuses to load the model from a file:// page: serve the folder.

The folder may hold other files (a GitHub Pages clone's .git, CNAME, README.md): an export replaces
only the files of the site there before it, which its manifest.json lists, and keeps the rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from mnist_jax.errors import PathError, UserError
from mnist_jax.files import check_name_lengths, read_regular, write_staged

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
# A name a manifest may claim as the site's: one folder deep at most, none hidden (.git), no "..".
SITE_NAME = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)?[A-Za-z0-9_-][A-Za-z0-9_.-]*")
SITE_ROOM = 64  # bytes a site's paths add to its folder's (ort/ort-wasm-simd-threaded.wasm, a temporary's suffix)


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


def site_names(ort: bool) -> list[str]:
    """The relative paths of a site's files: with `ort`, onnxruntime-web's in ORT_FOLDER too."""
    return [*PAGE_FILES, MODEL_FILE, MANIFEST_FILE, *([f"{ORT_FOLDER}/{name}" for name in ORT_FILES] if ort else [])]


def check_site_dir(directory: Path, *, apart_from: Path, ort: bool) -> None:
    """A PathError unless the site (with onnxruntime-web's files where `ort`) may be written into
    `directory`: where it replaces no file but an earlier site's own (`_check_in_the_way`), and
    apart from the run it is made from: not the run, not inside it, not holding it."""
    check_name_lengths(directory, room=SITE_ROOM)
    check_name_lengths(apart_from)
    if directory.is_symlink():
        raise PathError(f"{directory}: is a symbolic link; give the folder itself, or a new name")
    if directory.exists() and not directory.is_dir():
        raise PathError(f"{directory}: is a file; give a folder for the site (new, or one to add it to)")
    site, run = _resolved(directory), _resolved(apart_from)
    if site == run:
        raise PathError(f"{directory}: is the run the site is made from; write it elsewhere")
    if site.is_relative_to(run):
        raise PathError(f"{directory}: is inside {apart_from}, the run it is made from; write it elsewhere")
    if run.is_relative_to(site):
        raise PathError(f"{directory}: holds {apart_from}, the run the site is made from; write it elsewhere")
    _check_in_the_way(directory, site_names(ort), _own_files(directory))


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a loop of links: compared as it is written
        return path.absolute()


def _own_files(directory: Path) -> set[str] | None:
    """The files of the site that `directory` holds, as its manifest lists them (a manifest older
    than that list: every name a site can have); None where it holds no site of this command."""
    try:
        manifest = json.loads(read_regular(directory / MANIFEST_FILE, 1_000_000))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(manifest, dict) or manifest.get("written_by") != WRITTEN_BY:
        return None
    if not isinstance(manifest.get("files"), list):
        return set(site_names(ort=True))
    return {name for name in manifest["files"] if isinstance(name, str) and SITE_NAME.fullmatch(name)}


def _check_in_the_way(directory: Path, names, own: set[str] | None) -> None:
    """A PathError for anything that writing the files `names` into `directory` would replace or
    write through, other than the files `own` of the site there before (None: no site there)."""
    for name in names:
        path = directory / name
        for folder in [directory / above for above in reversed(Path(name).parents[:-1])]:
            if folder.is_symlink() or folder.exists() and not folder.is_dir():
                raise PathError(f"{folder}: is a file or a link where the site's folder {folder.name}/ goes; "
                                f"move it, or give another folder")
        if path.is_dir() and not path.is_symlink():
            raise PathError(f"{path}: is a folder where the site's {name} goes; move it, or give another folder")
        if (path.is_symlink() or path.exists()) and name not in (own or ()):
            raise PathError(f"{path}: the site would replace it, and no {MANIFEST_FILE} of {WRITTEN_BY} "
                            f"there lists it as the site's; move it, or give another folder")


def run_name(run_dir: str | os.PathLike | None) -> str:
    """How the page names the run in `run_dir` (None: the bundled run)."""
    return "the bundled run (the notebook's 30 epochs)" if run_dir is None else Path(run_dir).name


def manifest(config: Any, history: dict[str, Any], unsure_below: float | None, run: str) -> dict[str, Any]:
    """manifest.json: what the page says of the run named `run` (a `TrainConfig`, its history and
    its threshold of "unsure", None for a run older than it or one whose rule says it) and the pad's
    sizes. `write_run_site` adds "doubts": the codes of the model's "verdict" output, or None."""
    from mnist_jax.apps import drawing
    from mnist_jax.data.datasets import DATASETS

    return {"run": run, "dataset": config.dataset, "class_names": list(DATASETS[config.dataset].class_names),
            "test_accuracy": history["test_accuracy"][-1] if history["test_accuracy"] else None,
            "unsure_below": unsure_below, "doubts": None, "thing": DATASETS[config.dataset].thing,
            "pad": drawing.PAD_SIZE, "brush": drawing.BRUSH_SIZE}


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
    manifest["files"] = sorted([*files, MANIFEST_FILE])  # what a later export replaces, and nothing else
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode()
    return files


def write_run_site(directory: Path, params: Any, config: Any, manifest: dict[str, Any],
                   ort_files: dict[str, bytes] | None, rule: Any = None) -> dict[str, bytes]:
    """The site of a run's `params` and `config` (a `TrainConfig`), written into `directory`
    (`write_site`); its files. With the run's `rule` (a `novelty.NoveltyRule`) its model also says
    what the rule doubts ("doubt" and "verdict", export.export_page_onnx), and its manifest gives
    the verdict's codes ("doubts"). A UserError naming `directory` if it cannot be written."""
    from mnist_jax.apps import novelty
    from mnist_jax.apps.export import export_page_onnx

    doubts = None if rule is None else {"unsure": novelty.UNSURE, "not_a_digit": novelty.NOT_A_DIGIT}
    files = site_files(export_page_onnx(params, config, rule), {**manifest, "doubts": doubts}, ort_files)
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
    """Write the site's `files` (by relative path) into `directory`, keeping whatever else is there:
    of the site there before, the files its manifest lists that the new one lacks are removed.
    Each file is first written whole beside its place, so that a failure then (a full disk) leaves
    the folder as it was; then each is renamed onto its place, in an order that keeps every file
    of ours there listed by the manifest on disk, so a later export can replace what a killed one left."""
    own = _own_files(directory) or set()
    _check_in_the_way(directory, files, own)
    made: list[Path] = []
    staged: dict[str, Path] = {}
    try:
        for name, content in files.items():
            made += _make_folders((directory / name).parent)
            staged[name] = write_staged(directory / name, content)
    except BaseException:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
        for folder in reversed(made):
            _remove_if_empty(folder)
        raise
    try:
        # Old names first, old leftovers removed, then the new manifest and its new names: it never misses a file.
        for name in [name for name in staged if name in own and name != MANIFEST_FILE]:
            os.replace(staged.pop(name), directory / name)
        for name in sorted(own - set(files)):
            _remove_site_file(directory, name)
        for name in sorted(staged, key=lambda name: name != MANIFEST_FILE):
            os.replace(staged.pop(name), directory / name)
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and those above it that are missing; those made, outermost first."""
    missing = []
    while not folder.exists() and not folder.is_symlink():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir()
    return missing[::-1]


def _remove_site_file(directory: Path, name: str) -> None:
    """Remove an earlier site's file `name` from `directory`, and its folder if that is left empty;
    never through a link to another folder."""
    path = directory / name
    folders = [directory / above for above in Path(name).parents[:-1]]  # innermost first
    if any(folder.is_symlink() for folder in folders):
        return
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    for folder in folders:
        _remove_if_empty(folder)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: a file of the user's is there
