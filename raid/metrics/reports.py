"""The report files a person reads: metrics.json, metrics.csv, report.md, roc.png, and the
robustness plot. Column names, order and number formats come from `raid.metrics.metrics`.

Plots are drawn with matplotlib's Agg canvas (no pyplot, no display), imported only when a
plot is drawn, at a fixed size and 100 dpi in one pass (no tight-bbox second render).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from raid.metrics.metrics import FPR_TARGETS, HEADERS, METRICS, EvaluationResult, percent
from raid.primitives.errors import RaidError
from raid.primitives.fileio import write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSV_COLUMNS: tuple[str, ...] = ("group", "n") + METRICS
_DPI = 100


def write_report(result: EvaluationResult, out_dir: str | Path, *, title: str = "RAID evaluation",
                 extra_lines: Sequence[str] = ()) -> dict[str, Path]:
    """Write metrics.json, metrics.csv, report.md and roc.png into `out_dir` (created).

    Every file is rendered in memory first and then written to a temporary file beside
    its target and moved into place, so an interrupted run leaves no half-written file.
    Returns ``{"json", "csv", "markdown", "roc"}`` -> path.
    """
    out_dir = Path(out_dir)
    contents = {
        "json": ("metrics.json", (json.dumps(result.metrics, indent=2) + "\n").encode("utf-8")),
        "csv": ("metrics.csv", csv_bytes(result)),
        "markdown": ("report.md", markdown(result, title, extra_lines).encode("utf-8")),
        "roc": ("roc.png", roc_png(result, title)),
    }
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RaidError(f"cannot create the report folder: {exc.strerror}", out_dir) from None
    paths: dict[str, Path] = {}
    for key, (name, data) in contents.items():
        paths[key] = out_dir / name
        write_bytes(paths[key], data)
    return paths


def rows(result: EvaluationResult) -> Iterable[tuple[str, int, Mapping]]:
    """(group, n, metrics) per group in result order, then ("mean", total n, means)."""
    for name, m in result.metrics["groups"].items():
        yield name, m["n"], m
    n_total = sum(m["n"] for m in result.metrics["groups"].values())
    yield "mean", n_total, result.metrics["mean"]


def csv_value(value: float | None) -> str:
    """A metric in a CSV cell: full precision (repr), empty when undefined."""
    return "" if value is None else repr(float(value))


def csv_bytes(result: EvaluationResult) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, n, m in rows(result):
        writer.writerow([name, n] + [csv_value(m[k]) for k in METRICS])
    return buffer.getvalue().encode("utf-8")


def md_cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def markdown(result: EvaluationResult, title: str, extra_lines: Sequence[str] = ()) -> str:
    lines = [f"# {title}", "",
             f"Metrics in percent. An image is called generated when P(generated) > "
             f"{result.threshold:g}. "
             "The mean row averages each metric over the groups where it is defined. "
             "TPR @ x % FPR: the share of generated images detected at the threshold that "
             "calls at most x % of the real images generated (– where a group has fewer "
             "than 1/x real images).", ""]
    lines.append("| Group | n | " + " | ".join(HEADERS[k] for k in METRICS) + " |")
    lines.append("|---|---:|" + "---:|" * len(METRICS))
    group_rows = list(rows(result))
    for name, n, m in group_rows[:-1]:
        lines.append(f"| {md_cell(name)} | {n} | " + " | ".join(percent(m[k]) for k in METRICS)
                     + " |")
    _, n, m = group_rows[-1]
    lines.append(f"| **mean** | {n} | " + " | ".join(f"**{percent(m[k])}**" for k in METRICS)
                 + " |")
    lines.append("")
    if result.notes or result.n_unknown:
        lines += ["## Notes", ""]
        for name, group_notes in result.notes.items():
            lines += [f"- {md_cell(name)}: {note}" for note in group_notes]
        if result.n_unknown:
            lines.append(f"- {result.n_unknown} images with an unknown label (no 0_real / 1_fake "
                         "folder) were left out.")
        lines.append("")
    if extra_lines:
        lines += list(extra_lines) + [""]
    return "\n".join(lines)


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)  # Agg canvas without pyplot: no global state, no display needed
    return fig


def _png_bytes(fig: "Figure") -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def roc_png(result: EvaluationResult, title: str) -> bytes:
    """ROC curves of every group with both classes, one figure, as PNG bytes. The
    false-positive axis is logarithmic (down to the decade of one image of the largest
    group, at least 1e-4), so curves near AUROC 1 stay apart from the frame; the FPRs of
    the TPR @ FPR columns are marked."""
    fig = _figure(7, 6)
    ax = fig.add_axes((0.1, 0.1, 0.86, 0.82))
    sizes = [result.metrics["groups"][name]["n"] for name in result.curves]
    lo = max(1e-4, 10.0 ** math.floor(math.log10(1 / max(sizes)))) if sizes else 1e-3
    ax.set_xscale("log")
    chance = np.logspace(math.log10(lo), 0, 64)
    ax.plot(chance, chance, linestyle="--", color="0.6", linewidth=1)
    for _, target in FPR_TARGETS:
        if target >= lo:
            ax.axvline(target, color="0.85", linewidth=0.8, zorder=0)
    for name, curve in result.curves.items():
        ax.plot(np.maximum(curve.fpr, lo), curve.tpr, linewidth=1.3,
                label=f"{name} (AUROC {percent(curve.auroc)})")
    ax.set_xlim(lo, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate, log scale (real called generated)")
    ax.set_ylabel("true-positive rate (generated detected)")
    ax.set_title(title)
    if result.curves:
        ax.legend(loc="lower right", fontsize="small" if len(result.curves) <= 10 else "x-small")
    skipped = result.skipped()
    if skipped:
        fig.text(0.01, 0.005, "skipped (one class only): " + ", ".join(skipped),
                 fontsize="small", va="bottom", wrap=True)
    return _png_bytes(fig)


_SWEEP_AXES = {"jpeg": "JPEG quality", "blur": "blur sigma (pixels)",
               "noise": "noise sigma ([0, 1] scale)", "resize": "scale factor",
               "crop": "kept fraction of each side"}


def plot_sweep(points: Iterable[tuple[str, float, float | None]], out_path: str | Path,
               *, title: str = "Robustness") -> Path:
    """Plot mean accuracy against perturbation strength, one panel per perturbation kind.

    points: (kind, strength, mean accuracy in [0, 1] or None). Each kind gets its own panel
    (their strengths have different units: JPEG quality, sigma, factor) with a shared
    accuracy axis; points of kind "clean" are drawn as a dashed reference line in every
    panel. Written atomically; returns the path.
    """
    out_path = Path(out_path)
    by_kind: dict[str, list[tuple[float, float]]] = {}
    clean: list[float] = []
    for kind, strength, accuracy in points:
        if accuracy is None or not math.isfinite(float(accuracy)):
            continue
        if kind == "clean":
            clean.append(float(accuracy))
        else:
            by_kind.setdefault(str(kind), []).append((float(strength), float(accuracy)))
    if not by_kind:
        raise RaidError("no perturbed results to plot", out_path)
    fig = _figure(4 * len(by_kind) + 1, 4)
    axes = fig.subplots(1, len(by_kind), sharey=True, squeeze=False)[0]
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.85)
    for ax, (kind, kind_points) in zip(axes, by_kind.items()):
        kind_points.sort()
        ax.plot([s for s, _ in kind_points], [100 * a for _, a in kind_points], marker="o",
                label=kind)
        if clean:
            ax.axhline(100 * float(np.mean(clean)), linestyle="--", color="0.5", label="clean")
        ax.set_xlabel(_SWEEP_AXES.get(kind, f"{kind} setting"))
        if kind in ("jpeg", "resize", "crop"):
            ax.invert_xaxis()  # smaller values are stronger: stronger to the right everywhere
        ax.set_title(kind)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel("mean accuracy (%)")
    fig.suptitle(title)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out_path, _png_bytes(fig))
    return out_path
