"""One vocabulary for every `raid` command: shared argument groups, value types and the
help format.

    add_logging_arguments(p)         -v/-q/--log-level, accepted anywhere on the line
    add_input_arguments(p, ...)      INPUT positional or --input (old spellings hidden)
    add_aim_arguments(p)             --arch, --backbone, --head, --probe
    add_run_arguments(p)             --batch-size, --num-workers, --precision, --seed,
                                     devices (--accelerator, --devices, --strategy,
                                     --num-nodes), --max-pixels, --compile
    extract_options(args)            the `ExtractOptions` those groups describe

Old spellings (`--output`, `--real`, `fp32`, `bf16`, `32-true`, `cuda` ...) are accepted
for one release and shown nowhere in help or messages. Nothing here imports torch or
Lightning (only inside the functions that build run options): a parser stays cheap.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
from typing import Any, Sequence

from raid.primitives.errors import RaidError

#: The precision names of every command (Lightning's), and the old spellings they replace.
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
PRECISION_ALIASES = {"fp32": "32", "32-true": "32", "float32": "32",
                     "bf16": "bf16-mixed", "fp16": "16-mixed", "16": "16-mixed",
                     "float16": "16-mixed"}
#: What AIM feature extraction supports (float16 overflows in AIM's attention).
AIM_PRECISIONS = ("32", "bf16-mixed")
#: The autoencoders' names for the same precisions (`raid.models.autoencoders.PRECISIONS`).
AUTOENCODER_PRECISION = {"32": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}
ACCELERATORS = ("auto", "cpu", "gpu")
ACCELERATOR_ALIASES = {"cuda": "gpu"}
LOG_LEVELS = ("debug", "info", "warning", "error")
#: `raid.primitives.images.DEFAULT_MAX_PIXELS`, repeated so that building a parser imports
#: no numpy or Pillow (a test checks that the two agree).
DEFAULT_MAX_PIXELS = 128_000_000


#: Old option spellings still accepted (one release) but not shown in help.
HIDDEN_ALIASES: set[str] = set()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows a default once, and only a real one: not for required options, flags, None,
    or help text that already speaks of its default; marks required options; leaves the
    old spellings (HIDDEN_ALIASES) out."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = [o for o in action.option_strings if o not in HIDDEN_ALIASES]
        if shown != action.option_strings:
            action = copy.copy(action)
            action.option_strings = shown
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.help is argparse.SUPPRESS:
            return text
        if action.required and action.option_strings:
            return text + " (required)"
        default = action.default
        if (default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or "default" in text.lower() or default == []):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL,
                                                     argparse.ZERO_OR_MORE):
            return text + " (default: %(default)s)"
        return text


class RaidArgumentParser(argparse.ArgumentParser):
    """A usage error is one line naming the option, plus where to read more (not the
    whole usage block); exit code 2, as argparse's. Positionals may come anywhere on the
    line (`raid detect MODEL --arch 3b photo.jpg`): a command's parser parses intermixed."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing or any(isinstance(act, argparse._SubParsersAction)
                                    for act in self._actions):
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back into here
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str):
        for alias in HIDDEN_ALIASES:  # "--out/--output" -> "--out"
            message = message.replace(f"/{alias}", "")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def use_formatter(p: argparse.ArgumentParser) -> None:
    """The help format and one-line usage errors for a command's parser (`raid.cli.main`
    may create its subparsers as `RaidArgumentParser` already; then only the help
    format changes)."""
    p.formatter_class = HelpFormatter
    if type(p) is argparse.ArgumentParser:
        p.__class__ = RaidArgumentParser


# ---- value types: a bad value is a one-line usage error naming the option ----

def _whole_number(text: str, low: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1, "must be at least 1")


def nonnegative_int(text: str) -> int:
    return _whole_number(text, 0, "must be 0 or more")


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") \
            from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def probability(text: str) -> float:
    """A number from 0 to 1 (a threshold on P(generated))."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") \
            from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie from 0 to 1, got {text}")
    return value


def devices(text: str) -> int | str:
    """auto, a count (4), or device indices (0,1)."""
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    parts = text.split(",")
    if len(parts) > 1 and all(p.strip().isdigit() for p in parts):
        return ",".join(p.strip() for p in parts)
    raise argparse.ArgumentTypeError(
        f"expected auto, a count such as 2, or device indices such as 0,1; got {text!r}")


def precision(text: str) -> str:
    name = PRECISION_ALIASES.get(text, text)
    if name not in PRECISIONS:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(PRECISIONS)}, got {text!r}")
    return name


def accelerator(text: str) -> str:
    return ACCELERATOR_ALIASES.get(text, text)


def gamma(text: str) -> str | float:
    """RBF gamma: auto, scale or a positive number."""
    if text in ("auto", "scale"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, scale or a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


# ---- shared groups ----

def add_logging_arguments(p: argparse.ArgumentParser, top: bool = False) -> None:
    """-v/--verbose, -q/--quiet, --log-level. On a subcommand (top=False) the defaults are
    SUPPRESS, so a value given before the subcommand is not overwritten by its default."""
    g = p.add_argument_group("logging")
    keep = {} if top else {"default": argparse.SUPPRESS}
    g.add_argument("-v", "--verbose", action="store_true", help="same as --log-level debug",
                   **keep)
    g.add_argument("-q", "--quiet", action="store_true",
                   help="warnings and errors only; no progress bars (same as --log-level "
                        "warning)", **keep)
    g.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower,
                   help="messages shown on stderr (default: info; debug also shows "
                        "tracebacks)", **({"default": None} if top else keep))


def log_level(args: argparse.Namespace) -> int:
    """The logging level the line asks for: --log-level, else -v (debug), -q (warning),
    else info."""
    name = getattr(args, "log_level", None)
    if name:
        return getattr(logging, name.upper())
    if getattr(args, "verbose", False):
        return logging.DEBUG
    if getattr(args, "quiet", False):
        return logging.WARNING
    return logging.INFO


def apply_logging(args: argparse.Namespace) -> None:
    """Set the root logger to the level asked for (idempotent; `raid.cli.main` sets it up
    too, commands call this so that -q/--log-level work after the subcommand)."""
    logging.getLogger().setLevel(log_level(args))


def add_input_arguments(p: argparse.ArgumentParser, metavar: str, help: str,
                        old: Sequence[str] = (), many: bool = False) -> None:
    """The input as a positional (INPUT, or INPUT... with `many`) or `--input`, and any
    `old` spellings as hidden aliases of --input. `input_paths(args)` reads them back."""
    p.add_argument("inputs", nargs="*" if many else "?", metavar=metavar,
                   default=[] if many else None, help=help + " (or --input)")
    HIDDEN_ALIASES.update(old)
    p.add_argument("--input", *old, dest="input_opt", action="append", default=None,
                   metavar=metavar, help=f"same as the positional {metavar}"
                   + ("; repeatable" if many else ""))


def input_paths(args: argparse.Namespace, what: str) -> list[str]:
    """Every input given (positional first, then --input); an error when there is none."""
    given = args.inputs if isinstance(args.inputs, list) else \
        ([] if args.inputs is None else [args.inputs])
    paths = [*given, *(args.input_opt or [])]
    if not paths:
        raise RaidError(f"no input given: name the {what} (positional or --input)")
    return paths


def one_input(args: argparse.Namespace, what: str) -> str:
    paths = input_paths(args, what)
    if len(paths) > 1:
        raise RaidError(f"one {what} only, got {len(paths)}: {', '.join(paths)}")
    return paths[0]


def add_out_argument(p: argparse.ArgumentParser, help: str, required: bool = False,
                     old: Sequence[str] = (), metavar: str = "OUT", **kw: Any) -> None:
    HIDDEN_ALIASES.update(old)
    p.add_argument("--out", *old, dest="out", required=required, metavar=metavar, help=help,
                   **kw)


def add_aim_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The AIM options of every command that makes features."""
    g = p.add_argument_group("AIM model")
    g.add_argument("--arch", required=required, metavar="SIZE|YAML",
                   help="600m, 1b, 3b, 7b, or a YAML file with width, depth, heads, "
                        "probe_layers, patch_size, image_size")
    g.add_argument("--backbone", required=required, metavar="FILE",
                   help="official backbone .pth (or one merged .pth/.safetensors state dict)")
    g.add_argument("--head", default=None, metavar="FILE",
                   help="official attention-probe head .pth (needed with the official "
                        "two-file checkpoints; not with one merged file)")
    g.add_argument("--probe", choices=["best", "last"], default="best",
                   help="which probe layers the head was trained on")


def add_seed_argument(g: Any, help: str = "run seed: each file's patch is drawn from "
                      "(seed, its path)") -> None:
    g.add_argument("--seed", type=int, default=0, help=help)


def add_device_arguments(g: Any) -> None:
    """Where a Lightning run goes (every command that runs over image folders)."""
    g.add_argument("--accelerator", type=accelerator, choices=ACCELERATORS, default="auto",
                   help="auto = a GPU when one is visible, else the CPU")
    g.add_argument("--devices", type=devices, default="auto",
                   help="devices per node: auto, a count (2) or indices (0,1)")
    g.add_argument("--strategy", choices=["auto", "ddp"], default="auto",
                   help="how several devices share the work (ddp: one process each)")
    g.add_argument("--num-nodes", type=positive_int, default=1,
                   help="machines taking part in a multi-node run")


def add_batching_arguments(g: Any, batch_size: int = 64) -> None:
    g.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help="images per batch")
    g.add_argument("--num-workers", type=nonnegative_int, default=min(8, os.cpu_count() or 1),
                   help="image decoding processes per device (0: in the main process)")


def add_precision_argument(g: Any, choices: Sequence[str] = PRECISIONS,
                           help: str = "32 = float32; bf16-mixed = bfloat16 autocast "
                                       "(GPUs); 16-mixed = float16 autocast",
                           flag: str = "--precision", old: Sequence[str] = ()) -> None:
    HIDDEN_ALIASES.update(old)
    g.add_argument(flag, *old, type=precision, choices=list(choices), default="32",
                   help=help)


def add_max_pixels_argument(g: Any) -> None:
    g.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help="refuse images with more pixels than this, read from their header "
                        "before decoding")


def add_run_arguments(p: argparse.ArgumentParser, batch_size: int = 64) -> None:
    """How a feature-making run goes: batching, precision, seed, devices, pixel limit."""
    g = p.add_argument_group("running")
    add_batching_arguments(g, batch_size)
    add_precision_argument(g, AIM_PRECISIONS,
                           help="AIM precision: 32 = float32; bf16-mixed = bfloat16 "
                                "autocast (GPUs)")
    add_seed_argument(g)
    add_device_arguments(g)
    add_max_pixels_argument(g)
    g.add_argument("--compile", action="store_true", help="torch.compile the model (GPUs)")


def check_accelerator(args: argparse.Namespace) -> None:
    """`--accelerator gpu` where no GPU is visible: a one-line error saying what to do."""
    if getattr(args, "accelerator", None) != "gpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise RaidError("--accelerator gpu: no CUDA GPU is visible to torch on this machine; "
                        "use --accelerator cpu (or auto)")


def extract_options(args: argparse.Namespace, **overrides: Any) -> Any:
    """The `ExtractOptions` described by the AIM and running groups (imports the
    extraction module, and so Lightning: call it inside `run`)."""
    from raid.pipelines.extraction import ExtractOptions

    check_accelerator(args)
    fields = dict(
        arch=getattr(args, "arch", None), backbone=getattr(args, "backbone", None),
        head=getattr(args, "head", None), probe=getattr(args, "probe", "best"),
        batch_size=args.batch_size, num_workers=args.num_workers, precision=args.precision,
        seed=args.seed, accelerator=args.accelerator, devices=args.devices,
        strategy=args.strategy, num_nodes=args.num_nodes, max_pixels=args.max_pixels,
        compile=args.compile)
    fields.update(overrides)
    return ExtractOptions(**fields)


def exit_code(failed: int) -> int:
    """0 when every input was done, 1 when the run finished but some inputs failed."""
    return 1 if failed else 0
