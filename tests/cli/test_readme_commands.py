"""Every `raid ...` command in the README's fenced code blocks parses (issue 11 item 10):
the command exists and its options are spelled as the parser takes them. Placeholders
are allowed: `...` stands for options left out, `[--opt VALUE|OTHER]` for optional ones
(the first choice is parsed), `#` starts a comment, `\\` continues a line."""

import re
import shlex
from pathlib import Path

import pytest

from raid.cli.main import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^\s*(```|~~~)(.*)$")


def fenced_raid_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command) of each `raid ...` line in fenced blocks, continuations
    joined, comments and prompts (`$ `) dropped."""
    found: list[tuple[int, str]] = []
    inside, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not pending and not line.startswith("raid "):
            continue
        start = start if pending else number
        pending += " " + line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        found.append((start, pending.strip()))
        pending = ""
    return found


ELLIPSIS = ("...", "…")


def words(command: str) -> list[str]:
    """The argv of a README command, placeholders resolved (see the module docstring):
    `...` after an option is its value, elsewhere it stands for options left out."""
    command = re.sub(r"\s#.*$", "", command)  # a trailing comment
    command = re.sub(r"\[(--[^\]]*)\]", lambda m: m.group(1).split("|")[0], command)
    argv = shlex.split(command)[1:]
    out: list[str] = []
    for w in argv:
        if w in ELLIPSIS:
            if out and out[-1].startswith("-"):
                out.append("VALUE")
            continue
        out.append(w)
    return out


def leaves_options_out(command: str) -> bool:
    argv = shlex.split(re.sub(r"\s#.*$", "", command))
    return any(w in ELLIPSIS and not argv[i - 1].startswith("-")
               for i, w in enumerate(argv) if i)


def test_the_parser_reads_the_placeholders():
    text = "```bash\nraid fit s.h5 --out m \\\n   [--backend auto|sklearn] # note\n```\n"
    (line, cmd), = fenced_raid_lines(text)
    assert line == 2 and words(cmd) == ["fit", "s.h5", "--out", "m", "--backend", "auto"]
    assert words("raid x ... --arch ... --n 1") == ["x", "--arch", "VALUE", "--n", "1"]
    assert leaves_options_out("raid x ... --n 1") and not leaves_options_out("raid x --a ...")


COMMANDS = fenced_raid_lines(README.read_text(encoding="utf-8")) if README.exists() else []


@pytest.mark.skipif(not COMMANDS, reason="the README holds no fenced raid commands")
@pytest.mark.parametrize("line, command", COMMANDS, ids=[f"L{n}" for n, _ in COMMANDS])
def test_readme_command_parses(line, command, capsys):
    argv = words(command)
    if "--help" in argv or "-h" in argv or "--version" in argv:
        argv = [w for w in argv if w not in ("--help", "-h", "--version")]
    parser, _ = build_parser(argv)
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        err = capsys.readouterr().err.strip().splitlines()
        if exc.code == 2 and leaves_options_out(command) and err and \
                "the following arguments are required" in err[-1]:
            return  # `raid extract ... --devices 8`: the rest is left out on purpose
        pytest.fail(f"README.md line {line}: `{command}` does not parse (exit {exc.code}): "
                    f"{err[-1] if err else ''}")
