"""`raid bench cli` times every command's help as a whole process and reports exit codes."""

from __future__ import annotations

import re

import pytest

from raid.cli.main import COMMANDS, main


@pytest.mark.slow
def test_bench_cli_times_every_command_and_reads_exit_codes(capsys):
    code = main(["bench", "cli", "--runs", "1"])
    out = capsys.readouterr().out
    rows = re.findall(r"^  (.+?)\s+(\d+\.\d{3}) s\s+(\d+\.\d)x python's start  exit (\d+)",
                      out, re.M)
    seen = {label: (float(s), int(rc)) for label, s, _, rc in rows}
    for name in COMMANDS:
        assert seen[f"raid {name.replace('_', '-')} --help"][1] == 0
    assert seen["raid --help"][1] == 0 and seen["raid --version"][1] == 0
    assert seen["raid fit --no-such-option (usage error)"][1] == 2
    assert all(s > 0 for s, _ in seen.values())
    under = int(re.search(r"^(\d+) of (\d+) under", out, re.M).group(1))
    assert code == (0 if under == len(seen) - 1 else 1)
