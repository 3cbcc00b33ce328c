"""One checked reader for every YAML file RAID takes (AIM sizes, benchmark lists, the demo
config): errors name the file, and line and column where YAML reports them; unknown and
repeated keys are named so that a typo never passes silently.

Built-in files (the AIM sizes, the AIGCDetectBenchmark list) ship inside the package under
`raid/data/<kind>/<name>.yaml`, so an installed RAID needs no checkout; `configs/` in the
repository holds the same files for users to copy and edit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from raid.primitives.errors import RaidError

#: Package data: raid/data/<kind>/<name>.yaml (declared in pyproject.toml).
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "data"


def builtin_path(name: str) -> Path:
    """The shipped copy of a built-in file, e.g. builtin_path("benchmark/aigcdetect.yaml")."""
    return BUILTIN_DIR / name


def builtin_names(kind: str) -> list[str]:
    """Names of the built-in YAML files of one kind ("aim", "benchmark"), sorted."""
    return sorted(p.stem for p in (BUILTIN_DIR / kind).glob("*.yaml"))


def looks_like_path(value: str | os.PathLike) -> bool:
    """Whether a config argument is a file path rather than a built-in name: it ends in
    .yaml/.yml, holds a path separator, or names something that exists."""
    text = os.fspath(value)
    path = Path(text)
    return (path.suffix.lower() in (".yaml", ".yml") or os.sep in text
            or (os.altsep is not None and os.altsep in text) or path.exists())


def resolve_config(value: str | os.PathLike, kind: str) -> Path:
    """A YAML file given by path, or by the name of a built-in one of `kind`:
    resolve_config("aigcdetect", "benchmark") -> the shipped aigcdetect.yaml."""
    if looks_like_path(value):
        path = Path(value)
        if not path.is_file():
            raise RaidError("no such file" if not path.exists() else "not a file", path)
        return path
    name = os.fspath(value)
    path = BUILTIN_DIR / kind / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(builtin_names(kind)) or "none"
        raise RaidError(f"unknown built-in {kind} config {name!r} (built in: {known}; "
                        "or give a YAML file)")
    return path


def _strict_loader() -> type:
    """PyYAML's safe loader, except that a key given twice in one mapping is an error
    (plain PyYAML keeps the last value silently)."""
    import yaml  # a light import, but only the commands that read YAML pay it

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice", key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def load_yaml(path: str | os.PathLike, known: Iterable[str] | None = None,
              required: Iterable[str] = ()) -> dict[str, Any]:
    """The mapping at the top of a YAML file, checked against `known` and `required` keys."""
    import yaml

    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_strict_loader())
    except FileNotFoundError:
        raise RaidError("no such file", path) from None
    except IsADirectoryError:
        raise RaidError("is a folder, not a YAML file", path) from None
    except UnicodeDecodeError:
        raise RaidError("not a text file (not UTF-8)", path) from None
    except OSError as exc:
        raise RaidError(f"cannot read: {exc.strerror or exc}", path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RaidError(f"not valid YAML: {where}{problem}", path) from None
    if not isinstance(data, dict):
        raise RaidError("expected a mapping of keys to values at the top", path)
    if known is not None:
        unknown = sorted(set(map(str, data)) - set(known))
        if unknown:
            raise RaidError(f"unknown key(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}", path)
    missing = [k for k in required if k not in data]
    if missing:
        raise RaidError(f"missing key(s) {', '.join(missing)}", path)
    return data
