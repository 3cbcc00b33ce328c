"""`raid bench serve`: the HTTP service under load, with and without dynamic batching,
against one `raid detect` process per image, measured in one run on loopback.

The bench builds a tiny random-weight bundle (the demo's tiny AIM, an SVM fitted on
synthetic photos; or uses `--model BUNDLE`) and starts `raid serve` twice as child
processes on free loopback ports: with batching and with `--max-batch-size 1` (every other
setting the same). N concurrent clients then send M requests each of demo-sized synthetic
images to each service, side by side: in rounds, each service taking its share in turn
(the order alternating) while the other is frozen (SIGSTOP), so both see the same machine
even when other jobs come and go. Every answer must be 200 and the two services must agree
on every probability (to 1e-6), else the run fails (exit code 1).

The load generator runs on the same cores as the service, so besides the rates the bench
prints where the CPU time of a request went (from /proc, where there is one): the
inference worker, the rest of the service (HTTP process, LitServe's queue manager) and the
load generator itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP = ("HTTP service under load: requests/s and p50/p95 latency with dynamic batching, "
        "with --max-batch-size 1, and one `raid detect` process per image")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="BUNDLE",
                   help="bundle to serve (default: a tiny random-weight one made here)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--requests", type=int, default=50,
                   help="requests per client to each service")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds the requests are split into, alternating the services")
    p.add_argument("--images", type=int, default=32, help="distinct synthetic images sent")
    p.add_argument("--size", type=int, default=96, help="image height and width")
    p.add_argument("--max-batch-size", type=int, default=8, help="batching run's batch size")
    p.add_argument("--batch-timeout", type=float, default=0.0,
                   help="seconds a worker waits for more requests to fill a batch (both "
                        "runs; 0: a batch is what queued up while the worker was busy)")
    p.add_argument("--detect-images", type=int, default=3,
                   help="images scored by one `raid detect` process each (the slow path)")


def make_tiny_bundle(folder: str | os.PathLike, n_train: int = 24, seed: int = 0,
                     aim: dict | None = None) -> Path:
    """A bundle of the demo's tiny random-weight AIM (or `aim`: arch, backbone, head paths)
    and an SVM fitted on its features of synthetic photos (label 0) and their "fakes"
    (label 1). Seconds on a CPU; the probabilities mean nothing."""
    from raid.models.aim import load_config, random_aim, save_official_checkpoint
    from raid.pipelines.bundle import write_bundle
    from raid.pipelines.demo_data import TINY_AIM_YAML
    from raid.pipelines.featurizer import Featurizer
    from raid.primitives.synthetic import FAKE_PROCEDURES, fake_image, photo, rng_for
    from raid.svm.detector import RaidDetector

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if aim is None:
        aim = {"arch": folder / "aim-tiny.yaml", "backbone": folder / "backbone.pth",
               "head": folder / "head.pth"}
        aim["arch"].write_text(TINY_AIM_YAML)
        save_official_checkpoint(random_aim(load_config(aim["arch"]), seed=seed),
                                 aim["backbone"], aim["head"])
    featurizer = Featurizer.load(aim["arch"], aim["backbone"], aim["head"])
    images, keys, labels = [], [], []
    for i in range(n_train):
        images.append(photo(rng_for(seed, "real", i), 80, 96))
        images.append(fake_image(FAKE_PROCEDURES[i % 3], rng_for(seed, "fake", i), 80, 96))
        keys += [f"real_{i}.png", f"fake_{i}.png"]
        labels += [0, 1]
    features = featurizer.featurize(images, keys).features
    detector = RaidDetector().fit(features, labels)
    model = folder / "detector.safetensors"
    try:
        detector.save(model, provenance=featurizer.provenance)
    except TypeError:  # a detector format without provenance
        detector.save(model)
    return write_bundle(folder / "bundle", model, arch=aim["arch"], backbone=aim["backbone"],
                        head=aim["head"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Service:
    """`raid serve` in a child process (its own process group) on a free loopback port."""

    def __init__(self, bundle: Path, extra: list[str], log: Path):
        from raid.serve.service import health

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "raid.cli", "serve", "--model", str(bundle), "--host",
               "127.0.0.1", "--port", str(self.port), "--accelerator", "cpu", *extra]
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 180
        while health(self.url, timeout=2.0) != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace").strip().splitlines()[-1:]
                raise SystemExit(f"raid bench serve: the service did not start: {tail}")
            time.sleep(0.2)

    def pause(self) -> None:
        """Freeze every process of the service (its own session): it takes no CPU while
        the other service is measured."""
        if hasattr(signal, "SIGSTOP") and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if hasattr(signal, "SIGCONT") and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # LitServe's graceful shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _process_cpu(root: int) -> dict[str, float] | None:
    """CPU seconds (user + system) so far of the processes under `root`, by role: "worker"
    (LitServe's inference workers, started by multiprocessing's spawn) and "service" (the
    rest: HTTP server, LitServe's queue manager). None without /proc."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        parents[int(entry)] = int(fields[1])
        seconds[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = set(), {root}
    while frontier:
        tree |= frontier
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
    out = {"worker": 0.0, "service": 0.0}
    for pid in tree:
        try:
            spawned = b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        out["worker" if spawned else "service"] += seconds.get(pid, 0.0)
    return out


def _side_by_side(bundle: Path, modes: dict[str, list[str]], images: list, args,
                  log: Path) -> tuple[dict, dict]:
    """Per mode, the load result and the CPU seconds it took per role (None without /proc):
    both services up at once, `args.rounds` rounds, each service running its share of the
    requests in turn (the order alternating) while the other is frozen."""
    from raid.serve.client import LoadResult, load

    services: dict[str, _Service] = {}
    try:
        for name, extra in modes.items():
            services[name] = _Service(bundle, extra, log)
            load(services[name].url, images, args.clients, 2)  # warm-up: first batches
            services[name].pause()
        results = {name: LoadResult() for name in modes}
        cpu: dict[str, dict | None] = {name: {} for name in modes}
        rounds = max(1, min(args.rounds, args.requests))
        for r in range(rounds):
            share = args.requests // rounds + (r < args.requests % rounds)
            for name in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
                service = services[name]
                service.resume()
                before, client = _process_cpu(service.proc.pid), time.process_time()
                part = load(service.url, images, args.clients, share)
                client = time.process_time() - client
                after = _process_cpu(service.proc.pid)
                service.pause()
                total = results[name]
                total.answers += part.answers
                total.failures += part.failures
                total.seconds += part.seconds
                if before is None or after is None or cpu[name] is None:
                    cpu[name] = None
                    continue
                for role, used in ({k: after[k] - before[k] for k in after}
                                   | {"load generator": client}).items():
                    cpu[name][role] = cpu[name].get(role, 0.0) + used
        return results, cpu
    finally:
        for service in services.values():
            service.stop()


def _detect_processes(bundle: Path, images: list, folder: Path) -> float:
    """Seconds per image when each image is scored by its own `raid detect` process."""
    start = time.perf_counter()
    for key, data in images:
        path = folder / key
        path.write_bytes(data)
        done = subprocess.run([sys.executable, "-m", "raid.cli", "detect", "--model",
                               str(bundle), str(path), "--accelerator", "cpu",
                               "--num-workers", "0"], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"raid bench serve: raid detect failed: {done.stderr.strip()}")
    return (time.perf_counter() - start) / len(images)


def run(args: argparse.Namespace) -> int:
    from raid.primitives.synthetic import encode, photo, rng_for
    from raid.serve.app import ServeOptions

    with tempfile.TemporaryDirectory(prefix="raid-bench-serve-") as tmp:
        tmp = Path(tmp)
        bundle = Path(args.model) if args.model else make_tiny_bundle(tmp / "model")
        images = [(f"img_{i:03d}.png", encode(photo(rng_for("bench-serve", i), args.size,
                                                    args.size)))
                  for i in range(args.images)]
        print(f"{args.clients} clients x {args.requests} requests, {len(images)} distinct "
              f"{args.size} x {args.size} PNGs, loopback, {os.cpu_count()} CPU(s)")
        common = ["--batch-timeout", f"{args.batch_timeout:g}"]
        threads = ServeOptions(bundle=str(bundle)).worker_threads()
        print(f"both services: raid serve --accelerator cpu {' '.join(common)} (1 worker, "
              f"{threads} torch thread(s), other options at their defaults); only "
              f"--max-batch-size differs; measured side by side in {args.rounds} alternating "
              "rounds, the idle service frozen")
        modes = {f"batching (max batch {args.max_batch_size})":
                 ["--max-batch-size", str(args.max_batch_size), *common],
                 "no batching (max batch 1)": ["--max-batch-size", "1", *common]}
        runs, cpu = _side_by_side(bundle, modes, images, args, tmp / "serve.log")
        per_image = _detect_processes(bundle, images[:args.detect_images], tmp)

        probs: dict[str, list[float]] = {}
        failed = []
        for name, r in runs.items():
            lost = args.clients * args.requests - len(r.ok)
            if lost or r.failures:
                failed.append(f"{name}: {lost} request(s) without a 200 answer "
                              f"{r.failures[:1] or ''}")
            for a in r.ok:
                probs.setdefault(a.key, []).append(a.body["p_generated"])
        spread = max((max(v) - min(v) for v in probs.values()), default=0.0)
        if spread > 1e-6:
            failed.append(f"probabilities differ between answers by up to {spread:.2e}")

        print(f"{'path':<34} {'requests/s':>11} {'p50 ms':>8} {'p95 ms':>8}")
        for name, r in runs.items():
            print(f"{name:<34} {r.rate():>11.1f} {1e3 * r.percentile(50):>8.1f} "
                  f"{1e3 * r.percentile(95):>8.1f}")
        print(f"{'one raid detect process per image':<34} {1 / per_image:>11.2f} "
              f"{1e3 * per_image:>8.0f} {'':>8}")
        _print_cpu(runs, cpu)
        batched, single = (r.rate() for r in runs.values())
        print(f"batching / no batching: {batched / single:.2f}x requests/s")
        print(f"service (batching) / one process per image: {batched * per_image:.0f}x")
        print(f"answers agree across runs to {spread:.1e} "
              f"({sum(len(v) for v in probs.values())} answers, {len(probs)} images)")
        if failed:
            for line in failed:
                print(f"FAILED: {line}")
            return 1
    return 0


def _print_cpu(runs: dict, cpu: dict) -> None:
    """CPU milliseconds per answered request, by process role (where /proc told)."""
    roles = ("worker", "service", "load generator")
    if not all(cpu.values()):
        return
    print(f"{'CPU ms per request':<34} {'worker':>8} {'HTTP+queues':>11} {'load gen':>8} "
          f"{'total':>8}")
    for name, r in runs.items():
        n = max(1, len(r.ok))
        ms = [1e3 * cpu[name][role] / n for role in roles]
        print(f"{name:<34} {ms[0]:>8.2f} {ms[1]:>11.2f} {ms[2]:>8.2f} {sum(ms):>8.2f}")
