"""The `bertbeam` command: dispatches subcommands to their modules, importing each lazily."""
import importlib
import sys
from typing import Callable, Optional, Sequence

# Subcommand -> ("module", "function", one-line help). Each function takes argv (without the subcommand).
SUBCOMMANDS = {
    "build": ("pipeline.build", "main", "build pretraining TFRecords + manifest.json from a corpus (Beam)"),
    "inspect": ("pipeline.inspect_data", "main", "print a dataset's manifest and decode its first instances"),
    "segment": ("pipeline.segment_cmd", "main", "split paragraphs on stdin into sentences (one a line)"),
    "vocab": ("vocab.cli", "main", "train / report / validate WordPiece and SentencePiece vocabularies"),
    "train": ("training.run_pretrain", "main", "pretrain BERT/ALBERT in Flax on a built dataset"),
    "evaluate": ("training.evaluate", "main", "held-out MLM/NSP metrics of a checkpoint (last stdout line: JSON)"),
    "export": ("training.export", "main", "export trained Flax weights to a TF BERT/ALBERT checkpoint or (--format hf) a Hugging Face folder"),
    "plan": ("pipeline.plan", "main", "epoch / dupe_factor / wall-time arithmetic for a phase schedule"),
    "launch": ("pipeline.launch", "main", "launch training on TPU VMs (gcloud), with --dry_run"),
}
# Subcommands that need the `train` extra (setup.py TRAIN_REQUIRES), and the top-level modules it provides.
TRAIN_SUBCOMMANDS = ("train", "evaluate", "export")
_TRAIN_MODULES = ("tensorflow", "jax", "jaxlib", "flax", "optax", "orbax", "tensorboardX")


def _usage() -> str:
    lines = ["usage: bertbeam SUBCOMMAND [flags]", "", "subcommands:"]
    lines += [f"  {name:<8} {spec[2]}" for name, spec in SUBCOMMANDS.items()]
    lines += ["", "`bertbeam SUBCOMMAND --help` for its flags. Flags without a subcommand mean `build`",
              "(so `python -m pipeline.main --input_file=... ` builds, like `python -m pipeline.build`)."]
    return "\n".join(lines)


def _resolve(name: str) -> Callable[[Sequence[str]], Optional[int]]:
    module_name, func_name, _ = SUBCOMMANDS[name]
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("--") and argv[0] != "--help":
        # `python -m pipeline.main --input_file=... ` is `bertbeam build`, as Beam examples are run.
        argv = ["build"] + argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"bertbeam: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    from pipeline import runtime_env  # pylint: disable=import-outside-toplevel
    runtime_env.install_log_filters()  # before any subcommand imports Beam (its import-time warnings)
    try:
        result = _resolve(name)(rest)
    except BrokenPipeError:
        # The reader went away (`bertbeam segment F | head`): end quietly, as a Unix filter killed by SIGPIPE does.
        # stdout is pointed at /dev/null so that flushing it at exit raises nothing more.
        import os  # pylint: disable=import-outside-toplevel
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE
    except ModuleNotFoundError as e:
        if name not in TRAIN_SUBCOMMANDS or (e.name or "").split(".")[0] not in _TRAIN_MODULES:
            raise
        # The default install (`pip install -e .`, `./run_local.sh`) has the pipeline only.
        print(f"bertbeam {name}: error: needs the `train` extra ({e.name} is not installed): "
              f"pip install -e '.[train]' in the checkout (or pip install 'bertbeam[train]'); "
              f"`./run_local.sh {name} ...` installs it itself", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
