"""RAID installs anywhere: a wheel built from this tree, installed into a fresh virtual
environment outside the checkout, runs `raid demo` and knows the built-in AIM sizes and
benchmark list, reading nothing from the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the wheel is built from: the packages and the project metadata.
SOURCES = ("pyproject.toml", "README.md", "raid", "datamodules")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{cmd} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path, list[str]]:
    """(the fresh venv's bin folder, its environment, a work folder outside the checkout,
    the files other than Python sources in the tree's raid/ package)."""
    base = tmp_path_factory.mktemp("packaging")
    assert REPO not in base.parents, "the work folder must be outside the checkout"
    src = base / "src"  # a copy, so that building writes nothing into the checkout
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    wheels = base / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(wheels), str(src)], cwd=base, env=env)
    (wheel,) = wheels.glob("raid_detector-*.whl")

    # A fresh venv; the test run's own site-packages (torch, diffusers, ...) is appended to
    # its path by a .pth line. Only real site folders run .pth files, so the editable
    # install of this checkout that lives there stays inactive: raid comes from the wheel.
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    deps = Path(sysconfig.get_paths()["purelib"])
    (_site_packages(python) / "shared-deps.pth").write_text(f"{deps}\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], cwd=base, env=env)
    data_files = sorted(f.relative_to(src / "raid").as_posix()
                        for f in (src / "raid").rglob("*")
                        if f.is_file() and f.suffix not in (".py", ".pyc"))
    shutil.rmtree(src)  # nothing may need the sources once installed
    work = base / "work"
    work.mkdir()
    return env_dir / "bin", env, work, data_files


@pytest.mark.slow
def test_the_wheel_ships_the_built_in_files_and_not_the_checkout(installed):
    bin_dir, env, work, data_files = installed
    out = _run([str(bin_dir / "python"), "-c", """
import json, raid
from raid.models.aim import load_config, NAMED_SIZES
from raid.primitives.config import resolve_config, load_yaml
sizes = {n: load_config(n).width for n in NAMED_SIZES}
bench = load_yaml(resolve_config("aigcdetect", "benchmark"))
print(json.dumps({"file": raid.__file__, "sizes": sizes, "arch3b": load_config("3b").width,
                  "generators": len(bench["generators"])}))
"""], cwd=work, env=env)
    info = json.loads(out)
    assert Path(info["file"]).is_relative_to(bin_dir.parent), info["file"]
    assert info["arch3b"] == 3072
    assert info["sizes"] == {"600m": 1536, "1b": 2048, "3b": 3072, "7b": 4096}
    assert info["generators"] == 18
    package = Path(info["file"]).parent  # every data file of raid/ ships (YAML, the page)
    assert "data/aim/aim-3b.yaml" in data_files
    assert [f for f in data_files if not (package / f).is_file()] == []


@pytest.mark.slow
def test_the_installed_demo_runs_outside_the_checkout(installed):
    bin_dir, env, work, _ = installed
    text = _run([str(bin_dir / "raid"), "demo", "--out", "demo-out"], cwd=work, env=env)
    report = work / "demo-out" / "report"
    assert "report.md" in text and (report / "report.md").is_file(), text[-2000:]
    metrics = json.loads((report / "clean" / "metrics.json").read_text())
    assert metrics["groups"], metrics
    # everything the demo wrote is under its output folder
    assert sorted(p.name for p in work.iterdir()) == ["demo-out"]
