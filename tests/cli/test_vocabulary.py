"""One vocabulary across commands (issue 11 items 2 and 4): shared option groups, old
spellings as hidden aliases, help that shows each real default once and marks required
options, and one-line usage errors naming the option."""

import argparse
import subprocess
import sys

import pytest

from raid.cli import args as a
from raid.cli.commands import (benchmark, build_train, demo, detect, evaluate, fit, info,
                               split)

MINE = [detect, benchmark, fit, evaluate, demo, build_train, split, info]
#: The least each command parses.
MINIMAL = {"detect": ["m", "x.png"], "fit": ["s.h5", "--out", "m"],
           "benchmark": ["--config", "c", "--model", "m", "--out", "o", "--features", "f"],
           "evaluate": ["m", "s.h5", "--out", "o"], "demo": [], "split": ["s.h5"],
           "build-train": ["p", "--vae", "v", "--out", "s.h5", "--arch", "a", "--backbone", "b"],
           "info": ["s.h5"]}


def parser_of(module) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"raid {module.NAME}")
    module.add_arguments(p)
    return p


def options(p: argparse.ArgumentParser):
    return [act for act in p._actions if not isinstance(act, argparse._HelpAction)]


@pytest.mark.parametrize("module", MINE, ids=lambda m: m.NAME)
def test_every_option_has_help_and_states_its_default_once(module):
    p = parser_of(module)
    text = p.format_help()
    assert "(default: None)" not in text
    for act in options(p):
        if act.help is argparse.SUPPRESS:
            continue
        assert act.help, f"{module.NAME}: {act.option_strings or act.dest} has no help"
        shown = p._get_formatter()._expand_help(act)  # the help text as printed
        assert shown.lower().count("default") <= 1, (act.option_strings, shown)
        if act.required and act.option_strings:
            assert shown.endswith("(required)"), act.option_strings
        if act.choices:
            assert "{" + ",".join(map(str, act.choices)) + "}" in text


@pytest.mark.parametrize("module", MINE, ids=lambda m: m.NAME)
def test_logging_options_are_accepted_after_the_command(module):
    p = parser_of(module)
    args = p.parse_args(MINIMAL[module.NAME] + ["-q", "--log-level", "debug"])
    assert args.quiet and args.log_level == "debug"
    assert a.log_level(args) == 10  # --log-level wins over -q
    args = p.parse_args(MINIMAL[module.NAME])
    assert not hasattr(args, "quiet")  # SUPPRESS: a value given before the command stays


def test_precision_is_one_set_with_old_spellings_as_aliases():
    p = parser_of(build_train)
    base = ["photos", "--vae", "v", "--out", "s.h5", "--arch", "a", "--backbone", "b"]
    for old, new in [("fp32", "32"), ("32-true", "32"), ("bf16", "bf16-mixed"),
                     ("bf16-mixed", "bf16-mixed"), ("fp16", "16-mixed")]:
        args = p.parse_args(base + ["--recon-precision", old])
        assert args.recon_precision == new
        assert a.AUTOENCODER_PRECISION[new] in ("fp32", "bf16", "fp16")
    args = p.parse_args(base + ["--precision", "bf16"])
    assert args.precision == "bf16-mixed"


def test_old_spellings_parse_but_stay_out_of_help():
    p = parser_of(build_train)
    args = p.parse_args(["--real", "photos", "--vae", "v", "--output", "s.h5",
                         "--arch", "a", "--backbone", "b", "--accelerator", "cuda"])
    assert a.one_input(args, "folder") == "photos" and args.out == "s.h5"
    assert args.accelerator == "gpu"
    text = p.format_help()
    assert "--real" not in text and "--output" not in text
    positional = p.parse_args(["photos", "--vae", "v", "--out", "s.h5", "--arch", "a",
                               "--backbone", "b"])
    assert a.one_input(positional, "folder") == "photos"


def test_inputs_positional_or_input_everywhere():
    assert a.one_input(parser_of(fit).parse_args(["--input", "s.h5", "--out", "m"]),
                       "store") == "s.h5"
    assert a.one_input(parser_of(split).parse_args(["--input", "s.h5"]), "store") == "s.h5"
    assert a.input_paths(parser_of(detect).parse_args(["m", "x.png", "--input", "d/"]),
                         "paths") == ["m", "x.png", "d/"]
    with pytest.raises(Exception, match="no input given"):
        a.one_input(parser_of(fit).parse_args(["--out", "m"]), "feature store")


def test_max_pixels_default_is_the_library_one():
    from raid.primitives.images import DEFAULT_MAX_PIXELS

    assert a.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS


@pytest.mark.parametrize("argv, message", [
    (["detect", "m", "x.png", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["detect", "m", "x.png", "--num-workers", "-1"], "--num-workers: must be 0 or more"),
    (["detect", "m", "x.png", "--devices", "abc"], "--devices: expected auto, a count"),
    (["fit", "s.h5", "--out", "m", "--gamma", "banana"],
     "--gamma: expected auto, scale or a positive number, got 'banana'"),
    (["detect", "m", "x.png", "--precision", "fp64"], "--precision: expected one of 32"),
    (["split", "s.h5", "--test", "1.5"], "--test: must lie strictly between 0 and 1"),
    (["detect", "m", "x.png", "--threshold", "2"], "--threshold: must lie from 0 to 1"),
])
def test_bad_values_are_one_line_naming_the_option(argv, message):
    module = {m.NAME: m for m in MINE}[argv[0]]
    p = parser_of(module)
    a.use_formatter(p)
    r = subprocess.run(
        [sys.executable, "-c", "import argparse, sys\n"
         f"from raid.cli.commands import {module.__name__.rsplit('.', 1)[1]} as m\n"
         f"p = argparse.ArgumentParser(prog='raid {argv[0]}')\n"
         "m.add_arguments(p)\np.parse_args(sys.argv[1:])", *argv[1:]],
        capture_output=True, text=True)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err, err


def test_accelerator_gpu_without_a_gpu_is_one_line(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    from raid.cli.main import main

    (tmp_path / "x.png").write_bytes(b"")
    code = main(["detect", "m.safetensors", str(tmp_path / "x.png"), "--arch", "a",
                 "--backbone", "b", "--accelerator", "gpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--accelerator gpu: no CUDA GPU" in err and "--accelerator cpu" in err


def test_building_my_parsers_imports_nothing_heavy():
    names = ", ".join(m.__name__.rsplit(".", 1)[1] for m in MINE)
    code = ("import argparse, sys\n"
            f"from raid.cli.commands import {names}\n"
            f"for m in ({names},):\n"
            "    m.add_arguments(argparse.ArgumentParser())\n"
            "heavy = [m for m in ('torch', 'lightning', 'h5py', 'sklearn', 'numpy', 'PIL')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_usage_errors_name_the_new_spelling_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        parser_of(evaluate).parse_args(["m", "s.h5"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "required: --out" in err and "--output" not in err
