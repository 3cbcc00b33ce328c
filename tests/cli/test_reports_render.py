"""The markdown that `raid evaluate` and `raid benchmark` write renders as intended (issue
11 item 7), checked by rendering it with markdown-it-py: each header line its own item, not
one run-on paragraph; the tables are tables, with one column order (group, n, then the
metrics of `raid.metrics`) in report.md and benchmark.md alike."""

import re

import numpy as np
import pytest

from raid.cli.main import main
from raid.metrics.metrics import HEADERS, METRICS
from raid.store.store import StoreWriter

markdown_it = pytest.importorskip("markdown_it")


def render(path) -> str:
    return markdown_it.MarkdownIt("commonmark").enable("table").render(
        path.read_text(encoding="utf-8"))


def header_cells(html: str) -> list[str]:
    head = re.search(r"<thead>(.*?)</thead>", html, re.S)
    assert head, "no table"
    return [re.sub(r"<.*?>", "", c).strip() for c in re.findall(r"<th.*?>(.*?)</th>",
                                                                  head.group(1), re.S)]


@pytest.fixture
def model_and_store(tmp_path):
    rng = np.random.default_rng(0)
    keys, feats, labels, groups = [], [], [], []
    for g in ("gA", "gB"):
        for i in range(30):
            keys.append(f"{g}/{i % 2}_{'real' if i % 2 == 0 else 'fake'}/{i}.npy")
            labels.append(i % 2)
            groups.append(g)
            feats.append(rng.normal(loc=i % 2, size=6))
    store = tmp_path / "s.h5"
    with StoreWriter(store, 6, {"extractor": "imported-npy"}) as w:
        w.append(keys, np.asarray(feats, np.float32), labels, groups)
    model = tmp_path / "m.safetensors"
    assert main(["fit", str(store), "--out", str(model), "--backend", "sklearn"]) == 0
    return model, store


def test_evaluate_report_renders_as_intended(model_and_store, tmp_path):
    model, store = model_and_store
    assert main(["evaluate", str(model), str(store), "--out", str(tmp_path / "r")]) == 0
    html = render(tmp_path / "r" / "report.md")
    assert header_cells(html) == ["Group", "n", *(HEADERS[k] for k in METRICS)]
    items = re.findall(r"<li>(.*?)</li>", html, re.S)
    assert any(i.startswith("Model:") for i in items)
    assert any(i.startswith("Features:") for i in items)
    assert not re.search(r"<p>[^<]*Model:.*Features:", html, re.S)  # not one paragraph
    # evaluated on its own training rows: the warning is its own item, in bold
    assert any("<strong>Warning:" in i and "60 of 60" in i for i in items)


def test_benchmark_table_has_the_same_column_order(model_and_store, tmp_path):
    model, store = model_and_store
    config = tmp_path / "bench.yaml"
    config.write_text("name: t\ngenerators:\n  - {folder: gA, name: A}\n  - gB\n  - gone\n")
    assert main(["benchmark", "--config", str(config), "--model", str(model),
                 "--features", str(store), "--out", str(tmp_path / "b")]) == 0
    report, table = tmp_path / "b" / "clean" / "report.md", tmp_path / "b" / "clean" / \
        "benchmark.md"
    metric_headers = [HEADERS[k] for k in METRICS]
    assert header_cells(render(table)) == ["Generator", "n", *metric_headers]
    assert header_cells(render(report)) == ["Group", "n", *metric_headers]
    items = re.findall(r"<li>(.*?)</li>", render(report), re.S)
    assert any(i.startswith("Model:") for i in items)
    assert any("Missing generators" in i for i in items)
