"""What `mnist-jax export --format web` does to the folder it writes into (mnist_jax.apps.web): it
replaces an earlier site's own files, as its manifest lists them, and keeps everything else there
(a GitHub Pages clone's .git, CNAME, README.md); it never writes over the run it reads, nor over a
file of the user's; a failed write leaves the folder as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mnist_jax import cli, files
from mnist_jax.apps import web
from mnist_jax.run import rundir


def _export_web(capsys, *argv) -> tuple[int, str]:
    """`mnist-jax export --format web ARGV`: its exit status and stderr."""
    capsys.readouterr()
    code = cli.execute(["export", "--format", "web", *map(str, argv)])
    return code, capsys.readouterr().err


def _contents(folder: Path) -> dict[str, bytes | None]:
    """Everything under `folder` by relative path: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _pages_clone(folder: Path) -> dict[str, bytes | None]:
    """`folder` with what a GitHub Pages clone holds beside a site; those files (`_contents`)."""
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/gh-pages\n")
    (folder / "CNAME").write_text("digits.example.org\n")
    (folder / "README.md").write_text("# The digits page\n")
    return {name: content for name, content in _contents(folder).items()
            if name.split("/")[0] in (".git", "CNAME", "README.md")}


def test_a_second_export_replaces_the_site_and_keeps_the_folders_other_files(tmp_path, capsys):
    site = tmp_path / "site1"
    assert _export_web(capsys, "--out", site) == (0, "")
    theirs = _pages_clone(site)
    first = json.loads((site / web.MANIFEST_FILE).read_text())
    (site / "model.onnx").write_bytes(b"an older model")
    assert _export_web(capsys, "--out", site) == (0, "")
    after = _contents(site)
    assert {name: after.get(name) for name in theirs} == theirs  # .git, CNAME, README.md as they were
    assert set(after) == set(theirs) | set(web.site_names(ort=False))  # and nothing left beside them
    assert (site / "model.onnx").read_bytes() != b"an older model"
    assert first["files"] == sorted(web.site_names(ort=False))  # the manifest lists every file it wrote


def _manifest(*names: str) -> bytes:
    return json.dumps({"written_by": web.WRITTEN_BY, "files": list(names)}).encode()


def test_an_earlier_sites_files_go_and_nothing_else_does(tmp_path):
    site = tmp_path / "site"
    # Hand-edited: what is no site's name (hidden, outside the folder) is never taken as the site's.
    listed = ["index.html", "ort/ort.wasm.min.js", "ort/old.js", web.MANIFEST_FILE, ".git/HEAD", "../outside.txt",
              "/etc/hostname"]
    web.write_site(site, {"index.html": b"old", "ort/ort.wasm.min.js": b"x", "ort/old.js": b"x",
                          web.MANIFEST_FILE: _manifest(*listed)})
    theirs = _pages_clone(site)
    (site / "ort" / "NOTES.md").write_text("mine")
    (tmp_path / "outside.txt").write_text("mine")
    new = {"index.html": b"new", web.MANIFEST_FILE: _manifest("index.html", web.MANIFEST_FILE)}
    web.write_site(site, new)
    after = _contents(site)
    assert {name: after.get(name) for name in theirs} == theirs
    assert set(after) - set(theirs) == {"index.html", web.MANIFEST_FILE, "ort", "ort/NOTES.md"}
    assert after["index.html"] == b"new" and (tmp_path / "outside.txt").read_text() == "mine"
    # A manifest older than its list of files: the names a site can have are its own, and no others;
    # a site's folder goes with its last file.
    (site / web.MANIFEST_FILE).write_text(json.dumps({"written_by": web.WRITTEN_BY}))
    (site / "ort" / "ort.wasm.min.js").write_bytes(b"x")
    (site / "ort" / "NOTES.md").unlink()
    web.write_site(site, new)
    assert set(_contents(site)) == set(theirs) | {"index.html", web.MANIFEST_FILE}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.txt", "site"]


def test_a_failed_write_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    site = tmp_path / "site"
    manifest = _manifest("index.html", web.MANIFEST_FILE)
    web.write_site(site, {"index.html": b"old", web.MANIFEST_FILE: manifest})
    _pages_clone(site)
    before = _contents(site)
    staged, calls = files.write_staged, []

    def full_disk_at_the_third_file(path, data):
        calls.append(path)
        if len(calls) % 3 == 0:
            raise OSError(28, "No space left on device")
        return staged(path, data)

    monkeypatch.setattr(web, "write_staged", full_disk_at_the_third_file)
    new = {"index.html": b"new", "ort/ort.wasm.min.js": b"x", "app.js": b"x", web.MANIFEST_FILE: manifest}
    with pytest.raises(OSError):
        web.write_site(site, new)
    assert _contents(site) == before  # no file replaced, no temporary left, no ort/ made
    with pytest.raises(OSError):
        web.write_site(tmp_path / "new" / "site", new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # the folders it made are gone too


def test_the_site_goes_nowhere_near_the_run_it_reads(tmp_path, capsys):
    site = tmp_path / "site1"
    assert _export_web(capsys, "--out", site) == (0, "")
    shutil.copytree(rundir.BUNDLED_RUN, site / "myrun")
    before = _contents(site)
    cases = [(site, "site1: holds"), (site / "myrun", "myrun: is the run the site is made from"),
             (site / "myrun" / "web", "web: is inside"), (tmp_path, "holds")]
    for out, message in cases:
        code, err = _export_web(capsys, site / "myrun", "--out", out)
        assert code == 2 and err.count("\n") == 1 and message in err, (out, err)
    assert _contents(site) == before
    assert rundir.load_run(site / "myrun")[0].epochs == 30  # still whole: its params match their SHA-256


def test_a_site_written_into_the_current_folder_replaces_no_file_of_the_users(tmp_path, capsys, monkeypatch):
    pages = tmp_path / "pages"
    theirs = _pages_clone(pages)
    monkeypatch.chdir(pages)
    for name, content in [("index.html", "<p>my page"), (web.MANIFEST_FILE, '{"mine": 1}')]:
        (pages / name).write_text(content)
        code, err = _export_web(capsys, "--out", ".")
        assert code == 2 and err.count("\n") == 1 and f"{name}: the site would replace it" in err, err
        assert (pages / name).read_text() == content
        (pages / name).unlink()
    (pages / "ort").write_text("a file where the site's folder goes")
    code, err = _export_web(capsys, "--out", ".", "--ort-dir", tmp_path / "nowhere")
    assert code == 2 and err.count("\n") == 1 and "ort: is a file or a link where the site's folder ort/ goes" in err
    (pages / "ort").unlink()
    assert _contents(pages) == theirs
    assert _export_web(capsys, "--out", ".") == (0, "")
    after = _contents(pages)
    assert {name: after.get(name) for name in theirs} == theirs
    assert set(after) == set(theirs) | set(web.site_names(ort=False))
