"""`raid bench detect`: both paths run side by side and must agree to 1e-6."""

import re

import pytest

from raid.cli.main import main


@pytest.mark.slow
def test_bench_detect_reports_ratios_and_agreement(capsys):
    assert main(["bench", "detect", "--images", "1", "3", "--height", "90",
                 "--width", "120"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s*(\d+) image\(s\): previous\s+([\d.]+) s, pipeline\s+([\d.]+) s "
                      r"\(x([\d.]+)\).*max \|dp\| ([\d.e+-]+)$", out, re.M)
    assert [r[0] for r in rows] == ["1", "3"], out
    for _, old, new, ratio, dp in rows:
        assert float(old) > 0 and float(new) > 0
        assert float(ratio) == pytest.approx(float(old) / float(new), rel=0.1, abs=0.1)
        assert float(dp) <= 1e-6
    assert "probabilities agree" in out
