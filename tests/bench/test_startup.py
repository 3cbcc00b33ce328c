"""`raid` start-up: a command imports its own module only, `raid bench KIND` its own kind,
`raid --version` no command at all, and `raid --help` still lists every command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from raid.cli.main import COMMANDS, build_parser, command_name, main, requested_command


def _imported_after(argv: list[str]) -> dict:
    """Modules of interest imported by building the parser for `argv`, in a fresh process."""
    code = (
        "import json, sys\n"
        "from raid.cli.main import build_parser\n"
        f"build_parser({argv!r})\n"
        "print(json.dumps({'commands': sorted(m for m in sys.modules\n"
        "                                     if m.startswith('raid.cli.commands.')),\n"
        "                  'bench': sorted(m for m in sys.modules if m.startswith('raid.bench.')),\n"
        "                  'torch': 'torch' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("argv, command", [
    (["fit", "store.h5"], "fit"), (["-v", "evaluate", "m", "s"], "evaluate"),
    (["import-npy", "src"], "import_npy"), (["--version"], None), ([], None),
    (["no-such-command"], None), (["--", "fit"], None),
    (["--log-level", "debug", "fit", "s"], "fit"), (["--log-level", "fit"], None)])
def test_requested_command(argv, command):
    assert requested_command(argv) == command


def test_a_command_imports_only_its_own_module():
    seen = _imported_after(["bench", "patch", "--images", "2"])
    assert seen["commands"] == ["raid.cli.commands.bench"]
    assert seen["bench"] == ["raid.bench.patch"]
    assert seen["torch"] is False  # the patch bench imports torch inside run()


def test_version_imports_no_command(capsys):
    assert _imported_after(["--version"])["commands"] == []
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("raid ")


def test_help_lists_every_command():
    parser, handlers = build_parser()
    text = parser.format_help()
    present = [command_name(n) for n in COMMANDS if command_name(n) in handlers]
    assert {"fit", "evaluate", "bench"} <= set(present)
    for name in present:
        assert name in text


def test_bench_help_lists_every_kind(capsys):
    from raid.cli.commands.bench import kinds

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    for kind in kinds():
        assert kind in out
