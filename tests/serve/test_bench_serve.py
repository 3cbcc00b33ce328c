"""`raid bench serve` end to end on a small load (the figures themselves are the bench's)."""

from __future__ import annotations

import re

import pytest

from raid.cli.main import main


@pytest.mark.slow
def test_bench_serve_runs_and_reports_ratios(bundle, capsys):
    code = main(["bench", "serve", "--model", str(bundle), "--clients", "3", "--requests", "4",
                 "--images", "5", "--size", "80", "--detect-images", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    for label in ("batching (max batch 8)", "no batching (max batch 1)",
                  "one raid detect process per image"):
        assert re.search(re.escape(label) + r"\s+\d+\.\d+", out), out
    assert re.search(r"batching / no batching: \d+\.\d\dx", out)
    assert re.search(r"service \(batching\) / one process per image: \d+x", out)
    assert "answers agree across runs" in out and "FAILED" not in out
