"""argparse helpers that accept google-research/bert's absl flag spellings."""
import argparse
from typing import List, Optional, Sequence

_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


def parse_bool(value: str, flag: str = "") -> bool:
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"--{flag}: expected a boolean (True/False), got {value!r}")


def add_bool(parser: argparse.ArgumentParser, name: str, default: Optional[bool], help_text: str) -> None:
    """--name, --name=True|False, --noname, as absl accepts them."""
    parser.add_argument(f"--{name}", nargs="?", const=True, default=default,
                        type=lambda v, _n=name: parse_bool(v, _n), help=help_text)
    parser.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


def normalize_argv(argv: Sequence[str], bool_flags: Sequence[str]) -> List[str]:
    """Rewrites `--flag True` style (space-separated boolean values) into `--flag=True`."""
    out: List[str] = []
    i = 0
    bools = {f"--{b}" for b in bool_flags}
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if arg in bools and i + 1 < len(argv) and argv[i + 1].strip().lower() in _TRUE | _FALSE:
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def int_list(value: str) -> List[int]:
    """"128,512" -> [128, 512]."""
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from e
