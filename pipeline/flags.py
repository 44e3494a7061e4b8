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


# ------------------------------------------------------------------------------------------------------------
# Unknown arguments: an error naming the argument and the closest known flag, as absl does (issue 21 item 10).


def option_strings(parser: argparse.ArgumentParser) -> List[str]:
    """Every `--flag` a parser accepts (its hidden --noflag spellings included)."""
    return [opt for action in parser._actions for opt in action.option_strings]  # pylint: disable=protected-access


def unknown_args_message(unknown: Sequence[str], known: Sequence[str]) -> Optional[str]:
    """"unknown flag --dupe_factr (did you mean --dupe_factor?)" for the arguments no parser took, or None.

    A token right after an unknown `--flag` (no `=`) is taken as its value and not named; other stray
    tokens are "unexpected argument"s."""
    import difflib  # pylint: disable=import-outside-toplevel
    flags: List[str] = []
    strays: List[str] = []
    after_flag = False
    for arg in unknown:
        if arg == "--":
            after_flag = False
            continue
        if arg.startswith("-") and len(arg) > 1 and not _is_number(arg):
            name, has_value, _ = arg.partition("=")
            close = difflib.get_close_matches(name, known, n=1)
            flags.append(f"{name} (did you mean {close[0]}?)" if close else name)
            after_flag = not has_value
            continue
        if not after_flag:
            strays.append(repr(arg))
        after_flag = False
    parts = []
    if flags:
        parts.append(f"unknown flag{'s' if len(flags) > 1 else ''} {', '.join(flags)}")
    if strays:
        parts.append(f"unexpected argument{'s' if len(strays) > 1 else ''} {', '.join(strays)}")
    return "; ".join(parts) or None


def _is_number(arg: str) -> bool:
    try:
        float(arg)
        return True
    except ValueError:
        return False


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose parse_args rejects an unknown argument with the closest known flag
    (`error: unknown flag --num_instance (did you mean --num_instances?)`, exit 2) instead of plain
    "unrecognized arguments"."""

    def parse_args(self, args=None, namespace=None):  # pylint: disable=arguments-differ
        parsed, rest = self.parse_known_args(args, namespace)
        message = unknown_args_message(rest, option_strings(self))
        if message:
            self.error(message)
        return parsed


def beam_unknown_args_message(beam_args: Sequence[str], own_parser: Optional[argparse.ArgumentParser] = None
                              ) -> Optional[str]:
    """The arguments left for Beam that no registered PipelineOptions class knows, as unknown_args_message
    words them (suggestions from the command's own flags and Beam's), or None when Beam takes them all.

    Beam's PipelineOptions.get_all_options builds an argparse parser from every PipelineOptions subclass
    defined so far and only logs "Discarding unparseable args" for the rest; this builds the same parser
    and makes them an error. Call it once the runner's module is imported (Beam's DaskRunner registers its
    --dask_* options on import): a `--runner` given as a dotted path, or DaskRunner, is imported here.
    A bad value of a known Beam flag is returned as argparse words it ("argument --direct_num_workers:
    invalid int value: 'x'") rather than printing Beam's whole usage. Costs a few ms once Beam is loaded."""
    if not beam_args:
        return None
    # pylint: disable=import-outside-toplevel,protected-access
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser
    _import_runner_module(beam_args)

    class _Parser(_BeamArgumentParser):
        def error(self, message):
            if message.startswith("ambiguous option: "):  # as Beam's own parser: not an error there either
                return
            raise _BeamValueError(message)

    parser = _Parser(allow_abbrev=False)
    subset: dict = {}
    for cls in PipelineOptions.__subclasses__():  # as get_all_options: the last definition of a name wins
        subset.setdefault(str(cls), cls)
    for cls in subset.values():
        cls._add_argparse_args(parser)
    try:
        _, unknown = parser.parse_known_args(list(beam_args))
    except _BeamValueError as e:
        return str(e)
    known = option_strings(parser) + (option_strings(own_parser) if own_parser is not None else [])
    return unknown_args_message(unknown, known)


class _BeamValueError(ValueError):
    pass


def _import_runner_module(beam_args: Sequence[str]) -> None:
    """Imports the module of `--runner=DaskRunner` or `--runner=package.module.Runner`, so that the options
    it defines are registered (Beam itself imports it only when the pipeline runs)."""
    import importlib  # pylint: disable=import-outside-toplevel
    runner = None
    args = list(beam_args)
    for i, arg in enumerate(args):
        if arg.startswith("--runner="):
            runner = arg.split("=", 1)[1]
        elif arg == "--runner" and i + 1 < len(args):
            runner = args[i + 1]
    if not runner:
        return
    module = None
    if runner.rsplit(".", 1)[-1].lower() in ("daskrunner", "dask"):
        module = "apache_beam.runners.dask.dask_runner"
    elif "." in runner:
        module = runner.rsplit(".", 1)[0]
    if module:
        try:
            importlib.import_module(module)
        except Exception:  # pylint: disable=broad-except  (not installed: the runner's own error comes later)
            pass
