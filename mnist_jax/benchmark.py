"""Benchmarks: mnist-jax against the notebook's PyTorch code, and the data pipeline.

    mnist-jax benchmark                          # 30 jax epochs, 3 epochs of each torch variant
    mnist-jax benchmark --epochs 3 --skip-torch --json bench.json
    mnist-jax benchmark --seeds 8 --skip-torch   # also 8 seeds at once (train --seeds 8)
    mnist-jax benchmark-data --repeat 3
    mnist-jax benchmark-use --repeat 5           # predict one image end to end; the demo's latency

mnist-jax runs as users run it, `mnist-jax train` in a child process: first with an empty
compilation cache, then again with the cache warm. Reported: compile time (first epoch minus the
median of the others), median epoch (train + test), total training time, process wall time, peak
host memory (max RSS), peak device memory (GPU), final test accuracy.
Where torch and torchvision import (`pip install -e ".[torch]"`), the notebook's own code
(DataLoader + ToTensor, as written) and the same model with the dataset kept on the device (no
DataLoader) run `--torch-epochs` epochs each in this process; their median epoch is compared with
mnist-jax's. With --seeds N, `train --seeds N` also runs once (with the single-seed run's cache): its training time and
the final test accuracy as mean +- std over the seeds.
Expect on 2 CPU cores (Sapphire Rapids): mnist-jax ~17 s per epoch, the notebook ~20-26 s; 8 seeds
~170-205 s per epoch. `benchmark-data`: first preparation ~3.5 s, loading both splits ~0.6 s.
`benchmark-use`: see run_use.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def child_max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def run_train(epochs: int, data_dir: str | None, cache_dir: Path, run_dir: Path, smoke_flags: list[str],
              seeds: int = 1) -> dict:
    cmd = [sys.executable, "-m", "mnist_jax", "train", "--epochs", str(epochs), "--run-dir", str(run_dir),
           "--overwrite", "--progress", "off", "--compile-cache", str(cache_dir), "--seeds", str(seeds)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    cmd += smoke_flags
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"mnist-jax train failed:\n{result.stderr[-2000:]}")
    record = json.loads((run_dir / "history.json").read_text())
    seconds = record["history"]["epoch_seconds"]
    median = statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
    return {"wall_seconds": wall, "train_seconds": sum(seconds), "median_epoch_seconds": median,
            "compile_seconds": max(seconds[0] - median, 0.0), "epoch_seconds": seconds,
            "final_test_accuracy": record["history"]["test_accuracy"][-1],
            "peak_device_bytes": record["system"].get("peak_device_bytes"), "device": record["system"]["device"]}


def seeds_row(run: dict, seeds: int) -> dict:
    """A `run_train` result of `--seeds N`, with the final test accuracy's mean and std over the seeds."""
    final = run["final_test_accuracy"]
    return {**run, "seeds": seeds, "final_test_accuracy_mean": statistics.mean(final),
            "final_test_accuracy_std": statistics.stdev(final) if len(final) > 1 else 0.0}


def mnist_torchvision_root(directory: Path) -> Path:
    """The bundled IDX files laid out as torchvision's MNIST expects them, so nothing is downloaded."""
    from mnist_jax.data import BUNDLED_DIR

    raw = directory / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in BUNDLED_DIR.glob("*.gz"):
        (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    return directory


def torch_benchmarks(epochs: int, root: Path) -> dict:
    """The notebook's code as written, and the same model with the data on the device."""
    import torch
    from torch import optim
    from torch.nn import functional as F
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from mnist_jax.torch_reference import Classifier

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def epoch_loop(train_batches, test_batches, n_train, n_test):
        torch.manual_seed(0)
        model = Classifier().to(device)
        optimizer = optim.Adam(model.parameters(), lr=1e-4)
        times, acc = [], 0.0
        for _ in range(epochs):
            sync()
            start = time.perf_counter()
            model.train()
            for x, y in train_batches():
                x, y = x.to(device), y.to(device)
                outputs = model(x)
                optimizer.zero_grad()
                loss = F.cross_entropy(outputs, y)
                loss.backward()
                optimizer.step()
                loss.item()  # the notebook syncs on every batch
            model.eval()
            correct = 0
            with torch.no_grad():
                for x, y in test_batches():
                    x, y = x.to(device), y.to(device)
                    correct += y.eq(model(x).argmax(dim=1)).sum().item()
            sync()
            times.append(time.perf_counter() - start)
            acc = correct / n_test
        return {"median_epoch_seconds": statistics.median(times), "epoch_seconds": times, "last_test_accuracy": acc}

    train_ds = datasets.MNIST(root=root, train=True, download=False, transform=transforms.ToTensor())
    test_ds = datasets.MNIST(root=root, train=False, download=False, transform=transforms.ToTensor())
    pin = device == "cuda"
    notebook = epoch_loop(lambda: DataLoader(train_ds, batch_size=512, shuffle=True, pin_memory=pin),
                          lambda: DataLoader(test_ds, batch_size=1024, shuffle=False, pin_memory=pin),
                          len(train_ds), len(test_ds))

    x_train = (train_ds.data.float() / 255.0).unsqueeze(1).to(device)
    y_train = train_ds.targets.to(device)
    x_test = (test_ds.data.float() / 255.0).unsqueeze(1).to(device)
    y_test = test_ds.targets.to(device)

    def on_device_train():
        order = torch.randperm(len(y_train), device=device)
        for i in range(0, len(order), 512):
            idx = order[i : i + 512]
            yield x_train[idx], y_train[idx]

    def on_device_test():
        for i in range(0, len(y_test), 1024):
            yield x_test[i : i + 1024], y_test[i : i + 1024]

    on_device = epoch_loop(on_device_train, on_device_test, len(y_train), len(y_test))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {"torch": torch.__version__, "device": name, "threads": torch.get_num_threads(),
            "notebook": notebook, "data_on_device": on_device}


def run(args: argparse.Namespace) -> int:
    import jax

    result: dict = {"machine": {"cpu_count": os.cpu_count(), "processor": cpu_name(),
                                "python": platform.python_version(), "jax": jax.__version__,
                                "jax_backend": jax.default_backend()}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # --train-examples and --test-examples make a smoke run of the benchmark, not a measurement.
        smoke = [flag for name in ("train_examples", "test_examples") if getattr(args, name)
                 for flag in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]
        cold, warm = [], []
        for r in range(args.repeat):
            cache = tmp / f"cache{r}"
            cold.append(run_train(args.epochs, args.data_dir, cache, tmp / "run", smoke))
            warm.append(run_train(args.epochs, args.data_dir, cache, tmp / "run", smoke))
        result["peak_host_bytes"] = child_max_rss_bytes()

        def med(runs, key):
            return statistics.median(r[key] for r in runs)

        jax_row = {k: med(cold, k) for k in ("median_epoch_seconds", "compile_seconds", "train_seconds", "wall_seconds")}
        jax_row.update(warm_cache_wall_seconds=med(warm, "wall_seconds"),
                       warm_cache_compile_seconds=med(warm, "compile_seconds"),
                       final_test_accuracy=cold[0]["final_test_accuracy"], device=cold[0]["device"],
                       peak_device_bytes=cold[0]["peak_device_bytes"], runs={"cold": cold, "warm": warm})
        result["mnist_jax"] = jax_row
        if args.seeds:
            result["seeds"] = seeds_row(run_train(args.epochs, args.data_dir, tmp / "cache0", tmp / "seeds", smoke,
                                                  args.seeds), args.seeds)

        if not args.skip_torch:
            try:
                import torch  # noqa: F401
                import torchvision  # noqa: F401
            except ImportError:
                print("torch/torchvision not importable: skipping the PyTorch rows")
            else:
                result["pytorch"] = torch_benchmarks(args.torch_epochs, mnist_torchvision_root(tmp / "torchvision"))

    print_table(result, args.epochs)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def print_table(result: dict, epochs: int) -> None:
    j = result["mnist_jax"]
    gib = 2**30
    print(f"machine: {result['machine']['cpu_count']} x {result['machine']['processor']}, JAX {result['machine']['jax']} on {j['device']} "
          f"({result['machine']['jax_backend']})")
    print("| what | median epoch (s) | vs mnist-jax |\n| --- | --- | --- |")
    print(f"| mnist-jax | {j['median_epoch_seconds']:.3f} | 1.00x |")
    if "pytorch" in result:
        t = result["pytorch"]
        for name, label in (("notebook", "PyTorch, the notebook's code"), ("data_on_device", "PyTorch, data on the device")):
            s = t[name]["median_epoch_seconds"]
            print(f"| {label} ({t['torch']}, {t['device']}) | {s:.3f} | {s / j['median_epoch_seconds']:.2f}x slower |")
    print()
    print(f"mnist-jax, {epochs} epochs: compile {j['compile_seconds']:.2f} s, training {j['train_seconds']:.2f} s, "
          f"`mnist-jax train` wall {j['wall_seconds']:.2f} s (empty compile cache), "
          f"{j['warm_cache_wall_seconds']:.2f} s (warm), final test accuracy {j['final_test_accuracy']:.4f}")
    device = f", peak device memory {j['peak_device_bytes'] / gib:.2f} GiB" if j["peak_device_bytes"] else ""
    print(f"peak host memory (max RSS of the mnist-jax train processes) {result['peak_host_bytes'] / gib:.2f} GiB{device}")
    if "seeds" in result:
        s = result["seeds"]
        print(f"{s['seeds']} seeds at once, {epochs} epochs: training {s['train_seconds']:.2f} s "
              f"(median epoch {s['median_epoch_seconds']:.3f} s), wall {s['wall_seconds']:.2f} s, final test accuracy "
              f"{s['final_test_accuracy_mean']:.4f} +- {s['final_test_accuracy_std']:.4f}")


def run_data(args: argparse.Namespace) -> int:
    """Each repeat prepares into a fresh temporary data dir and loads train and test back."""
    from mnist_jax import data

    prepare_s, load_s = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as data_dir:
            start = time.perf_counter()
            data.prepare(data_dir)
            prepare_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            for split in data.SPLITS:
                data.load_split(split, data_dir)
            load_s.append(time.perf_counter() - start)

    result = {"prepare_seconds": prepare_s, "load_both_splits_seconds": load_s}
    for name, values in result.items():
        print(f"{name:26s} median {statistics.median(values):6.2f}  min {min(values):6.2f}  max {max(values):6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _drawn_seven(path: Path) -> Path:
    """A 7 in black strokes on a transparent 280 x 280 pad, as the demo's pad hands it over."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(70, 50), (210, 50), (120, 240)], fill=(0, 0, 0, 255), width=22, joint="curve")
    image.save(path)
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_use(args: argparse.Namespace) -> int:
    """`mnist-jax predict one.png` end to end in a child process (its first run with an empty
    compilation cache, then `--repeat` with the cache warm), and the demo's answer to a drawn digit:
    the work in mnist-jax alone, the round trip of a gradio_client request to a served demo, and,
    where Playwright and Debian's chromium are installed, strokes drawn on the page."""
    with tempfile.TemporaryDirectory() as tmp:
        digit = _drawn_seven(Path(tmp) / "seven.png")
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(Path(tmp) / "cache")}
        command = [sys.executable, "-m", "mnist_jax", "predict", str(digit)]
        walls = []
        for _ in range(1 + args.repeat):
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
        result = {"predict_cold_cache_seconds": walls[0], "predict_warm_cache_seconds": walls[1:]}
        result.update(_demo_latency(digit, args.repeat * 4, env))
    print(f"mnist-jax predict one.png: {walls[0]:.2f} s with an empty compilation cache, "
          f"median {statistics.median(walls[1:]):.2f} s warm ({args.repeat} runs)")
    if "demo_round_trip_seconds" in result:
        print(f"demo, a drawn digit: median {1000 * statistics.median(result['demo_round_trip_seconds']):.0f} ms "
              f"round trip through gradio_client, of which "
              f"{1000 * statistics.median(result['demo_server_seconds']):.1f} ms in mnist-jax")
        if "demo_browser_seconds" in result:
            print(f"demo in headless Chromium: median {1000 * statistics.median(result['demo_browser_seconds']):.0f} ms "
                  f"from the pen lifted to the answer on the page")
    else:
        print(f"demo: not measured ({result['demo_skipped']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _demo_latency(digit: Path, requests: int, env: dict) -> dict:
    try:
        from gradio_client import Client
    except ImportError:
        return {"demo_skipped": "the demo extra is not installed"}
    import numpy as np
    from PIL import Image

    from mnist_jax import demo, runs
    from mnist_jax.model import classifier_for

    config, _, params = runs.load_run(runs.BUNDLED_RUN)
    drawing = demo.png_data_url(digit.read_bytes())
    model = classifier_for(config)
    demo.read_digit(params, model, np.asarray(Image.open(digit)))  # compiled once, as the server does
    server = []
    for _ in range(requests):
        start = time.perf_counter()
        demo.read_digit(params, model, demo.decode_drawing(drawing))
        server.append(time.perf_counter() - start)
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "mnist_jax", "demo", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        process.stdout.readline()  # "The drawing pad is at ..." once it answers
        url = f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False)
        trips = []
        for _ in range(requests):
            start = time.perf_counter()
            client.predict(drawing, api_name="/classify_drawing")
            trips.append(time.perf_counter() - start)
        result = {"demo_round_trip_seconds": trips, "demo_server_seconds": server}
        result.update(_browser_latency(url, requests))
    finally:
        process.terminate()
        process.wait()
    return result


# Headless Chromium on a closed network, as root: no sandbox, no GPU, and no background connections
# that the machine would refuse.
BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _browser_latency(url: str, strokes: int) -> dict:
    """Strokes drawn on the pad in headless Chromium (Debian's, with Playwright): the time from the
    pen lifted to the answer on the page, measured in the page itself."""
    import shutil

    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        return {"browser_skipped": "needs playwright and Debian's chromium"}
    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        canvas = page.locator("#pad canvas")
        canvas.wait_for()
        # In the page: when the pen is lifted, and when the status line first says what the model read.
        page.evaluate("""() => {
          window.lifted = 0; window.answered = 0;
          const status = document.querySelector('#status');
          document.querySelector('#pad canvas').addEventListener('pointerup', () => { window.lifted = performance.now(); }, true);
          new MutationObserver(() => {
            if (window.answered < window.lifted && status.textContent.includes('The model reads')) window.answered = performance.now();
          }).observe(status, { subtree: true, childList: true, characterData: true });
        }""")
        box = canvas.bounding_box()
        for _ in range(strokes):
            page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.15 * box["height"])
            page.mouse.down()
            page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.85 * box["height"], steps=8)
            page.mouse.up()
            page.wait_for_function("() => window.answered > window.lifted", timeout=10_000)
            seconds.append(page.evaluate("() => (window.answered - window.lifted) / 1000"))
            page.locator("#pad .clear").click()
            page.locator("#status").filter(has_text="Draw one digit").wait_for()
        browser.close()
    return {"demo_browser_seconds": seconds}
