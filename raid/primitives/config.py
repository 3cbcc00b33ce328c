"""One checked reader for every YAML file RAID takes (AIM sizes, benchmark lists, the demo
config): errors name the file, and line and column where YAML reports them; unknown keys
are named so that a typo never passes silently."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from raid.primitives.errors import RaidError


def load_yaml(path: str | os.PathLike, known: Iterable[str] | None = None,
              required: Iterable[str] = ()) -> dict[str, Any]:
    """The mapping at the top of a YAML file, checked against `known` and `required` keys."""
    import yaml  # a light import, but only the commands that read YAML pay it

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
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
