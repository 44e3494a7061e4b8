"""google-research/albert and bert `run_pretraining.py` flags -> `bertbeam train` flags (a pure translation)."""
import glob as globlib
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from training.config import _BOOL_FALSE, _BOOL_TRUE, ConfigError, parse_bool

# Same name and meaning in run_pretraining.py and `bertbeam train`: passed through untouched.
# (--output_dir too, but bertbeam writes the run to OUTPUT_DIR/RUN_PREFIX; see the note.)
TPU_FLAGS = ("use_tpu", "tpu_name", "tpu_zone", "num_tpu_cores", "gcp_project", "master")
_BOOL_FLAGS = {"do_train", "do_eval", "use_tpu"}
# Flags this module consumes (the rest are `bertbeam train`'s own and pass through).
_OWN = {"input_file", "num_train_steps", "num_warmup_steps", "save_checkpoints_steps", "keep_checkpoint_max",
        "optimizer", "do_train", "do_eval", "iterations_per_loop", "poly_power", "start_warmup_step",
        "max_eval_steps", *TPU_FLAGS}
# --eval_batch_size is also `bertbeam train`'s own flag (the in-training evaluation's batch): passed through.


class RunPretrainingFlagError(ConfigError):
    """A run_pretraining.py flag value bertbeam cannot honour; the message names the flag."""


def _split(argv: Sequence[str]) -> Tuple[List[Tuple[str, Optional[str]]], List[str]]:
    """(name, value) for the flags this module consumes, in order; every other argument untouched."""
    own: List[Tuple[str, Optional[str]]] = []
    rest: List[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        name, has_value, value = arg.lstrip("-").partition("=")
        negated = name.startswith("no") and name[2:] in _BOOL_FLAGS and not has_value
        if not arg.startswith("--") or (name not in _OWN and not negated):
            rest.append(arg)
            continue
        if negated:
            own.append((name[2:], "false"))
            continue
        if not has_value:
            if name in _BOOL_FLAGS:
                if i < len(args) and args[i].strip().lower() in _BOOL_TRUE | _BOOL_FALSE:
                    value = args[i]
                    i += 1
                else:
                    value = "true"
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                raise RunPretrainingFlagError(f"--{name} needs a value")
        own.append((name, value))
    return own, rest


def _bool(name: str, value: Optional[str]) -> bool:
    try:
        return parse_bool(value, name)  # the trainer's own absl-style booleans
    except ConfigError as e:
        raise RunPretrainingFlagError(str(e)) from e


def _int(name: str, value: Optional[str]) -> int:
    try:
        number = float(value) if any(c in str(value).lower() for c in ".e") else int(str(value))
    except ValueError as e:
        raise RunPretrainingFlagError(f"--{name}: expected an integer, got {value!r}") from e
    if number != int(number) or number < 0:
        raise RunPretrainingFlagError(f"--{name}: expected a non-negative integer, got {value!r}")
    return int(number)


def _has(rest: Sequence[str], name: str) -> bool:
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in rest)


def dataset_dir_from_input_file(pattern: str, glob: Optional[Callable[[str], List[str]]] = globlib.glob,
                                exists: Optional[Callable[[str], bool]] = os.path.exists) -> Tuple[str, List[str]]:
    """The dataset folder of an --input_file glob (comma-separated globs allowed): the one folder that holds
    the record files and manifest.json. Returns (folder, notes). Local patterns are checked with `glob`
    and `exists`; gs:// ones are taken as written (the trainer reads the manifest and says if it is missing)."""
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    if not patterns:
        raise RunPretrainingFlagError("--input_file is empty")
    folders = set()
    notes: List[str] = []
    for pat in patterns:
        folder = pat.rstrip("/") if pat.endswith("/") else pat.rsplit("/", 1)[0] if "/" in pat else "."
        if any(c in folder for c in "*?["):
            raise RunPretrainingFlagError(f"--input_file={pat}: the folder part has wildcards; bertbeam reads one "
                                          f"dataset folder (its manifest.json names the shards)")
        folders.add(folder)
        if "://" not in pat and glob is not None and not pat.endswith("/") and not glob(pat):
            raise RunPretrainingFlagError(f"--input_file={pat} matches no file")
    if len(folders) != 1:
        raise RunPretrainingFlagError(f"--input_file: record files in {len(folders)} folders ({sorted(folders)}); "
                                      f"give one dataset folder's files")
    folder = folders.pop()
    if "://" not in folder and exists is not None and not exists(os.path.join(folder, "manifest.json")):
        raise RunPretrainingFlagError(f"--input_file={pattern}: no manifest.json beside the record files in "
                                      f"{folder} (build them with `bertbeam build`)")
    notes.append(f"--input_file={pattern}: --pretrain_data={folder} (every shard its manifest.json lists is read)")
    return folder, notes


def translate(argv: Sequence[str], glob: Optional[Callable[[str], List[str]]] = globlib.glob,
              exists: Optional[Callable[[str], bool]] = os.path.exists) -> Tuple[List[str], List[str]]:
    """run_pretraining.py spellings -> `bertbeam train` flags. Returns (argv, notes for the user).

    --input_file GLOB -> --pretrain_data (the folder, its manifest beside the records);
    --albert_config_file / --bert_config_file: the same flags; --num_train_steps N -> one "epoch" of N steps;
    --num_warmup_steps -> --warmup_steps; --save_checkpoints_steps S -> a checkpoint every S steps
    (--steps_per_loop x --checkpoint_every_loops; --iterations_per_loop is the loop if given);
    --keep_checkpoint_max -> --keep_checkpoints; --optimizer -> --optimizer_type; --do_train: accepted;
    --use_tpu/--tpu_name/--tpu_zone/--num_tpu_cores/--gcp_project/--master: accepted, not needed (JAX finds
    the TPU cores on a TPU VM). Without --init_checkpoint, run_pretraining.py starts from random weights:
    so does this (--init_weights). Argv without any of these flags is returned unchanged.
    """
    own, rest = _split(argv)
    if not own:
        return list(argv), []
    values: Dict[str, Optional[str]] = {}
    for name, value in own:
        values[name] = value
    out = list(rest)
    notes: List[str] = []

    def add(flag: str, value) -> None:
        if _has(rest, flag):
            raise RunPretrainingFlagError(f"--{flag} given together with the run_pretraining.py flag that sets it")
        out.append(f"--{flag}={value}")

    if "input_file" in values:
        folder, more = dataset_dir_from_input_file(values["input_file"] or "", glob, exists)
        add("pretrain_data", folder)
        notes += more
    if "num_train_steps" in values:
        add("num_epochs", 1)
        add("num_steps_per_epoch", _int("num_train_steps", values["num_train_steps"]))
    if "num_warmup_steps" in values:
        add("warmup_steps", _int("num_warmup_steps", values["num_warmup_steps"]))
    if "save_checkpoints_steps" in values or "iterations_per_loop" in values:
        save = _int("save_checkpoints_steps", values.get("save_checkpoints_steps", "1000"))
        loop = _int("iterations_per_loop", values.get("iterations_per_loop", str(min(save, 1000)) if save else "1000"))
        if save < 1 or loop < 1:
            raise RunPretrainingFlagError("--save_checkpoints_steps and --iterations_per_loop must be >= 1")
        if save % loop:
            loop = math.gcd(save, loop)
            notes.append(f"metrics every {loop} steps (a divisor of --save_checkpoints_steps={save})")
        add("steps_per_loop", loop)
        add("checkpoint_every_loops", save // loop)
    if "keep_checkpoint_max" in values:
        add("keep_checkpoints", _int("keep_checkpoint_max", values["keep_checkpoint_max"]))
    if "optimizer" in values:
        opt = str(values["optimizer"]).strip().lower()
        if opt not in ("lamb", "adamw", "adam"):
            raise RunPretrainingFlagError(f"--optimizer={values['optimizer']}: use lamb or adamw")
        add("optimizer_type", "adamw" if opt == "adam" else opt)
    if "do_train" in values and not _bool("do_train", values["do_train"]):
        raise RunPretrainingFlagError("--do_train=False: `bertbeam train` only trains (drop the flag)")
    if "do_eval" in values and _bool("do_eval", values["do_eval"]):
        raise RunPretrainingFlagError("--do_eval=True is not supported: `bertbeam train` logs masked-LM accuracy "
                                      "on the training batches; evaluate a checkpoint separately")
    if "poly_power" in values and float(values["poly_power"] or 1) != 1.0:
        raise RunPretrainingFlagError(f"--poly_power={values['poly_power']}: only the linear decay (1.0) is supported")
    if "start_warmup_step" in values and _int("start_warmup_step", values["start_warmup_step"]) != 0:
        raise RunPretrainingFlagError("--start_warmup_step: only 0 is supported (use --start_step for a later phase)")
    if "max_eval_steps" in values:
        notes.append("--max_eval_steps ignored: with --eval_data, --max_eval_examples sets how many records each "
                     "evaluation reads (--eval_batch_size, the batch, is honoured)")
    tpu = [n for n in TPU_FLAGS if n in values]
    if tpu:
        notes.append(f"{', '.join('--' + n for n in tpu)}: accepted, not needed: on a TPU VM JAX finds every TPU "
                     f"core itself (use `bertbeam launch tpu` to create the VM and start the run)")
    if not _has(rest, "init_checkpoint") and not _has(rest, "init_weights") and not _has(rest, "config"):
        out.append("--init_weights=true")
        notes.append("no --init_checkpoint: random initial weights, as run_pretraining.py (--init_weights)")
    if _has(rest, "output_dir") and not _has(rest, "run_prefix"):
        notes.append("the run is written to OUTPUT_DIR/RUN_PREFIX (--run_prefix, default 'run')")
    return out, notes
