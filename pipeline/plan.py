"""`bertbeam plan`: examples, epochs, dupe_factor and wall time for a training phase schedule."""
import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from training.config import ConfigError, load_config_file, read_text

# Devlin et al. (2019): 1,000,000 steps x 256 sequences "approximately 40 epochs over the 3.3 billion
# word corpus". The seed compared its own schedule against these two numbers.
DEVLIN_CORPUS_WORDS = 3.3e9
DEVLIN_EPOCHS = 40.0
DEVLIN_STEPS = 1_000_000
DEVLIN_BATCH = 256

# Keys a training config may carry: `bertbeam train` flag names (training/config.py) plus `start_step`,
# the global step a continued run starts at (the restored checkpoint's step; the schedule counts from 0).
TRAIN_CONFIG_INT_KEYS = ("train_batch_size", "num_epochs", "num_steps_per_epoch", "max_seq_length",
                         "max_predictions_per_seq", "warmup_steps", "steps_per_loop", "start_step")
TRAIN_CONFIG_FLOAT_KEYS = ("learning_rate", "end_lr")
TRAIN_CONFIG_BOOL_KEYS = ("load_mlm_nsp_weights", "expect_partial", "init_weights")


class PlanError(ValueError):
    """A malformed phase, corpus size, manifest or config."""


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training phase: `steps` optimizer steps of `batch_size` sequences of `max_seq_length`."""
    max_seq_length: int
    steps: int
    batch_size: int
    name: str = ""

    @property
    def examples(self) -> int:
        return self.steps * self.batch_size


@dataclasses.dataclass(frozen=True)
class PhaseReport:
    """The arithmetic for one phase against the corpus of its sequence length."""
    phase: Phase
    instances_per_epoch: float  # instances one pass over the corpus yields (manifest count / dupe_factor)
    epochs: float  # examples needed / instances_per_epoch
    dupe_factor_nearest: int  # the seed's rounding (6.13 -> 6, 2.72 -> 3)
    dupe_factor_ceil: int  # smallest dupe_factor whose dataset covers the phase without re-reading
    shortfall_nearest: int  # examples re-read when the dataset is built with dupe_factor_nearest
    wall_seconds: Optional[float]  # at the given examples/s; None when no rate was given


@dataclasses.dataclass(frozen=True)
class PlanReport:
    """Per-phase reports plus totals and the seed's control against Devlin et al."""
    phases: List[PhaseReport]
    total_examples: int
    total_epochs: float
    total_epochs_rounded: float  # sum of per-phase epochs each rounded to 0.1, as the seed added them
    total_wall_seconds: Optional[float]
    per_length: Dict[int, Tuple[float, int]]  # seq -> (epochs summed over phases, ceil dupe_factor)
    corpus_ratio: Optional[float]  # corpus_words / reference_words
    reference_equivalent_epochs: Optional[float]  # total_epochs_rounded x round(corpus_ratio, 1)


# ----------------------------------------------------------------------------------------------
# Parsing inputs


def _parse_int(text: str, what: str) -> int:
    clean = text.strip().replace(",", "").replace("_", "")
    try:
        value = float(clean) if ("e" in clean.lower() or "." in clean) else int(clean)
    except ValueError as e:
        raise PlanError(f"{what}: expected an integer, got {text!r}") from e
    if float(value) != int(value):
        raise PlanError(f"{what}: expected an integer, got {text!r}")
    return int(value)


def _parse_float(text: str, what: str) -> float:
    try:
        return float(text.strip().replace(",", "").replace("_", ""))
    except ValueError as e:
        raise PlanError(f"{what}: expected a number, got {text!r}") from e


def parse_phase(text: str) -> Phase:
    """`SEQ:STEPS:BATCH[:NAME]` (thousands separators , or _ allowed) -> Phase."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise PlanError(f"--phase {text!r}: expected SEQ:STEPS:BATCH (e.g. 128:900000:2760)")
    seq = _parse_int(parts[0], f"--phase {text!r} SEQ")
    steps = _parse_int(parts[1], f"--phase {text!r} STEPS")
    batch = _parse_int(parts[2], f"--phase {text!r} BATCH")
    if seq < 1 or steps < 1 or batch < 1:
        raise PlanError(f"--phase {text!r}: SEQ, STEPS and BATCH must be positive")
    return Phase(seq, steps, batch, parts[3] if len(parts) == 4 else "")


def parse_seq_value(text: str, what: str) -> Tuple[int, float]:
    """`SEQ=N` -> (SEQ, N)."""
    seq, sep, value = text.partition("=")
    if not sep:
        raise PlanError(f"{what} {text!r}: expected SEQ=N (e.g. 128=405354995)")
    number = _parse_float(value, f"{what} {text!r}")
    if number <= 0:
        raise PlanError(f"{what} {text!r}: N must be positive")
    return _parse_int(seq, f"{what} {text!r} SEQ"), number


def parse_rates(values: Iterable[str]) -> Dict[Optional[int], float]:
    """`--examples_per_second X` (all lengths) or `SEQ=X` (one length) -> {seq or None: rate}."""
    rates: Dict[Optional[int], float] = {}
    for text in values:
        if "=" in text:
            seq, rate = parse_seq_value(text, "--examples_per_second")
            rates[seq] = rate
        else:
            rate = _parse_float(text, "--examples_per_second")
            if rate <= 0:
                raise PlanError("--examples_per_second must be positive")
            rates[None] = rate
    return rates


def manifest_instances_per_epoch(manifest: Mapping[str, Any], where: str = "manifest") -> Tuple[int, float]:
    """A dataset manifest -> (max_seq_length, instances per pass over the corpus).

    A manifest's num_instances covers all dupe_factor copies of every document, so one epoch over the
    corpus is num_instances / dupe_factor. Accepts bertbeam's `counts.train` and the seed's
    `counts.default`."""
    counts = manifest.get("counts") or {}
    split = counts.get("train") or counts.get("default")
    if not split or "num_instances" not in split:
        raise PlanError(f"{where}: no counts.train.num_instances")
    try:
        seq = int(manifest["max_seq_length"])
        dupe = int(manifest.get("dupe_factor", 1))
    except (KeyError, TypeError, ValueError) as e:
        raise PlanError(f"{where}: needs max_seq_length and dupe_factor") from e
    if dupe < 1:
        raise PlanError(f"{where}: dupe_factor must be >= 1, got {dupe}")
    return seq, int(split["num_instances"]) / dupe


def read_manifest(path: str) -> Dict[str, Any]:
    """A manifest.json file, or a dataset folder holding one (local or gs://)."""
    if not path.endswith(".json"):
        path = path.rstrip("/") + "/manifest.json"
    try:
        return json.loads(read_text(path))
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"{path}: cannot read manifest ({e})") from e


def corpus_sizes(manifests: Sequence[Tuple[str, Mapping[str, Any]]],
                 given: Sequence[Tuple[int, float]]) -> Dict[int, float]:
    """{seq: instances per epoch}. Manifests of the same length add up (a corpus built in parts);
    an explicit `--instances_per_epoch SEQ=N` replaces whatever the manifests said for SEQ."""
    sizes: Dict[int, float] = {}
    for where, manifest in manifests:
        seq, ipe = manifest_instances_per_epoch(manifest, where)
        sizes[seq] = sizes.get(seq, 0.0) + ipe
    for seq, ipe in given:
        sizes[seq] = ipe
    return sizes


# ----------------------------------------------------------------------------------------------
# Training configs and the seed's learning-rate schedule


def _coerce_config(path: str, data: Dict[str, Any]) -> Dict[str, Any]:
    # PyYAML reads `4e-4` (no dot) as a string; flags are typed, so coerce by key.
    out = dict(data)
    for key in TRAIN_CONFIG_INT_KEYS:
        if key in out and out[key] is not None:
            out[key] = _parse_int(str(out[key]), f"{path}: {key}")
    for key in TRAIN_CONFIG_FLOAT_KEYS:
        if key in out and out[key] is not None:
            out[key] = _parse_float(str(out[key]), f"{path}: {key}")
    for key in TRAIN_CONFIG_BOOL_KEYS:
        if key in out and not isinstance(out[key], bool):
            text = str(out[key]).strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise PlanError(f"{path}: {key}: expected a boolean, got {out[key]!r}")
            out[key] = text in ("true", "1", "yes")
    return out


def load_config(path: str) -> Dict[str, Any]:
    """A training config (YAML or JSON; keys are `bertbeam train` flag names) -> typed dict.

    Read by the trainer's own loader (training/config.py, which imports no JAX), so the planner and
    `bertbeam train --config` can never disagree on a file; then typed as the planner needs."""
    try:
        data = load_config_file(path)
    except ConfigError as e:
        raise PlanError(str(e)) from e
    return _coerce_config(path, data)


def config_total_steps(config: Mapping[str, Any]) -> int:
    """The global step the run ends at: num_epochs x num_steps_per_epoch (TF Model Garden)."""
    return int(config["num_epochs"]) * int(config["num_steps_per_epoch"])


def seed_learning_rate(config: Mapping[str, Any], step: float) -> float:
    """The seed trainer's learning rate at global `step` (TF Model Garden legacy BERT):
    linear warm-up 0 -> learning_rate while step < warmup_steps, else PolynomialDecay (power 1) from
    learning_rate to end_lr over total_steps, both counted from global step 0 — so a run continued from
    step S starts at the decayed value, not at learning_rate."""
    lr = float(config["learning_rate"])
    end_lr = float(config.get("end_lr", 0.0))
    warmup = int(config.get("warmup_steps", 0) or 0)
    total = config_total_steps(config)
    if warmup and step < warmup:
        return lr * step / warmup
    done = min(step, total) / total
    return (lr - end_lr) * (1.0 - done) + end_lr


def phase_from_config(config: Mapping[str, Any], name: str = "") -> Phase:
    """A training config -> the phase it runs: from start_step to num_epochs x num_steps_per_epoch."""
    try:
        steps = config_total_steps(config) - int(config.get("start_step", 0) or 0)
        phase = Phase(int(config["max_seq_length"]), steps, int(config["train_batch_size"]),
                      name or str(config.get("run_prefix", "")))
    except KeyError as e:
        raise PlanError(f"{name or 'config'}: missing {e.args[0]}") from e
    if phase.steps < 1:
        raise PlanError(f"{name or 'config'}: start_step is at or past the last step")
    return phase


def phases_from_data(data: Any, where: str) -> List[Phase]:
    """A phases file's content: a training config, `{phases: [...]}` or a list of phases.
    Each phase is `SEQ:STEPS:BATCH` or {max_seq_length, steps, train_batch_size|batch_size[, name]}."""
    if isinstance(data, dict) and "phases" not in data:
        return [phase_from_config(_coerce_config(where, data), os.path.basename(where))]
    items = data.get("phases") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise PlanError(f"{where}: expected a training config, a list of phases or {{phases: [...]}}")
    phases = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            phases.append(parse_phase(item))
            continue
        try:
            batch = item.get("train_batch_size", item.get("batch_size"))
            phases.append(Phase(_parse_int(str(item["max_seq_length"]), f"{where}[{i}]"),
                                _parse_int(str(item["steps"]), f"{where}[{i}]"),
                                _parse_int(str(batch), f"{where}[{i}]"), str(item.get("name", ""))))
        except (AttributeError, KeyError) as e:
            raise PlanError(f"{where}[{i}]: a phase needs max_seq_length, steps, train_batch_size") from e
    return phases


def read_phases_file(path: str) -> List[Phase]:
    """Phases from a YAML/JSON file (see phases_from_data)."""
    text = read_text(path)
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml  # pylint: disable=import-outside-toplevel
        data = yaml.safe_load(text)
    return phases_from_data(data, path)


# ----------------------------------------------------------------------------------------------
# The arithmetic


def round_half_up(value: float) -> int:
    """6.13 -> 6, 2.72 -> 3, 2.5 -> 3 (not Python's banker's rounding)."""
    return int(math.floor(value + 0.5))


def plan_phase(phase: Phase, instances_per_epoch: float, examples_per_second: Optional[float]) -> PhaseReport:
    """Examples, epochs, dupe_factor (nearest and ceil) and wall time for one phase."""
    epochs = phase.examples / instances_per_epoch
    nearest = max(1, round_half_up(epochs))
    ceil = max(1, math.ceil(epochs - 1e-12))
    shortfall = max(0, int(round(phase.examples - nearest * instances_per_epoch)))
    wall = phase.examples / examples_per_second if examples_per_second else None
    return PhaseReport(phase, instances_per_epoch, epochs, nearest, ceil, shortfall, wall)


def plan_schedule(phases: Sequence[Phase], sizes: Mapping[int, float],
                  rates: Optional[Mapping[Optional[int], float]] = None,
                  corpus_words: Optional[float] = None,
                  reference_words: float = DEVLIN_CORPUS_WORDS) -> PlanReport:
    """Every phase against the corpus of its sequence length, totals, and the Devlin control."""
    rates = rates or {}
    reports = []
    for phase in phases:
        if phase.max_seq_length not in sizes:
            raise PlanError(f"phase {phase.max_seq_length}:{phase.steps}:{phase.batch_size}: no corpus size "
                            f"for seq {phase.max_seq_length} (give --manifest or --instances_per_epoch "
                            f"{phase.max_seq_length}=N)")
        rate = rates.get(phase.max_seq_length, rates.get(None))
        reports.append(plan_phase(phase, sizes[phase.max_seq_length], rate))
    per_length: Dict[int, Tuple[float, int]] = {}
    for r in reports:
        epochs = per_length.get(r.phase.max_seq_length, (0.0, 0))[0] + r.epochs
        per_length[r.phase.max_seq_length] = (epochs, max(1, math.ceil(epochs - 1e-12)))
    walls = [r.wall_seconds for r in reports]
    total_epochs_rounded = round(sum(round(r.epochs, 1) for r in reports), 1)
    ratio = corpus_words / reference_words if corpus_words else None
    # The seed multiplied the rounded figures: 8.8 epochs x 5.6 = 49.
    equivalent = total_epochs_rounded * round(ratio, 1) if ratio else None
    return PlanReport(
        phases=reports,
        total_examples=sum(r.phase.examples for r in reports),
        total_epochs=sum(r.epochs for r in reports),
        total_epochs_rounded=total_epochs_rounded,
        total_wall_seconds=sum(walls) if walls and all(w is not None for w in walls) else None,
        per_length=per_length,
        corpus_ratio=ratio,
        reference_equivalent_epochs=equivalent,
    )


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:,.1f} h ({hours / 24:,.1f} days)" if hours >= 48 else f"{hours:,.1f} h"


# A dupe_factor above this is a sign of a corpus far too small for the phase, not a setting to build with.
MAX_SENSIBLE_DUPE_FACTOR = 100


def format_plan(plan: PlanReport) -> str:
    """The human-readable report `bertbeam plan` prints."""
    lines = []
    for i, r in enumerate(plan.phases, 1):
        p = r.phase
        title = f"phase {i}" + (f" ({p.name})" if p.name else "")
        lines.append(f"{title}: seq {p.max_seq_length}, {p.steps:,} steps x batch {p.batch_size:,}")
        lines.append(f"  examples needed : {p.examples:,}")
        lines.append(f"  epochs          : {r.epochs:.1f} ({r.epochs:.4f}) of {r.instances_per_epoch:,.0f} "
                     f"seq-{p.max_seq_length} instances per epoch")
        if r.dupe_factor_nearest == r.dupe_factor_ceil:
            lines.append(f"  dupe_factor     : {r.dupe_factor_ceil} (covers the phase without re-reading)")
        else:
            steps_short = r.shortfall_nearest / p.batch_size
            lines.append(f"  dupe_factor     : {r.dupe_factor_nearest} rounds {r.epochs:.1f} to nearest, as the "
                         f"seed did: fine, but the last {r.epochs - r.dupe_factor_nearest:.2f} epoch "
                         f"({r.shortfall_nearest:,} examples, {steps_short:,.0f} steps) re-reads instances "
                         f"already seen; {r.dupe_factor_ceil} (rounding up) is safer")
        if r.dupe_factor_ceil > MAX_SENSIBLE_DUPE_FACTOR:
            lines.append(f"  WARNING         : dupe_factor {r.dupe_factor_ceil:,} is absurd: the corpus is far too small "
                         f"for this phase (every instance would be seen {r.epochs:,.0f} times, masked "
                         f"{r.dupe_factor_ceil:,} ways); use a larger corpus or fewer steps (BERT used dupe_factor "
                         f"10; above {MAX_SENSIBLE_DUPE_FACTOR} the model memorises the corpus)")
        if r.wall_seconds is not None:
            rate = p.examples / r.wall_seconds
            lines.append(f"  wall time       : {_duration(r.wall_seconds)} at {rate:,.1f} examples/s")
    lines.append(f"total: {plan.total_examples:,} examples, {plan.total_epochs_rounded:.1f} epochs "
                 f"({' + '.join(f'{r.epochs:.1f}' for r in plan.phases)}; unrounded {plan.total_epochs:.2f})")
    if len(plan.per_length) < len(plan.phases):
        for seq, (epochs, dupe) in sorted(plan.per_length.items()):
            lines.append(f"  seq {seq}: {epochs:.2f} epochs over all its phases -> dupe_factor {dupe} if the "
                         f"phases continue through the data instead of restarting it")
    if plan.total_wall_seconds is not None:
        lines.append(f"  wall time: {_duration(plan.total_wall_seconds)}")
    if plan.corpus_ratio is not None:
        lines.append(f"control: corpus {plan.corpus_ratio:.1f}x the reference (Devlin 3.3B words): "
                     f"{plan.total_epochs_rounded:.1f} epochs x {plan.corpus_ratio:.1f} = "
                     f"{plan.reference_equivalent_epochs:.0f} reference-corpus epochs "
                     f"(Devlin: {DEVLIN_STEPS:,} steps x {DEVLIN_BATCH} = {DEVLIN_EPOCHS:.0f} epochs)")
        lines.append("  note: Devlin counts epochs in 512-token sequences, these epochs count instances of the "
                     "corpus at each length, so the control is the seed's rule of thumb, not an identity")
    return "\n".join(lines)


def plan_as_dict(plan: PlanReport) -> Dict[str, Any]:
    """JSON-ready form of a PlanReport."""
    out = dataclasses.asdict(plan)
    out["per_length"] = {str(k): {"epochs": v[0], "dupe_factor": v[1]} for k, v in plan.per_length.items()}
    for report in out["phases"]:
        report["examples"] = report["phase"]["steps"] * report["phase"]["batch_size"]
    return out


# ----------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    from pipeline.flags import ArgumentParser  # pylint: disable=import-outside-toplevel
    p = ArgumentParser(
        prog="bertbeam plan",
        description="Per phase and in total: training examples, epochs over the corpus of that sequence "
                    "length, the smallest sufficient dupe_factor, and wall time.")
    p.add_argument("--manifest", action="append", default=[], help="a dataset's manifest.json or folder "
                   "(repeatable; instances per epoch = counts.train.num_instances / dupe_factor)")
    p.add_argument("--instances_per_epoch", action="append", default=[], metavar="SEQ=N",
                   help="instances one pass over the corpus yields at SEQ (repeatable)")
    p.add_argument("--phase", action="append", default=[], metavar="SEQ:STEPS:BATCH", help="a phase (repeatable)")
    p.add_argument("--phases_file", action="append", default=[], metavar="F.yaml|json",
                   help="a training config (one phase: start_step..num_epochs*num_steps_per_epoch) or a "
                        "list of phases (repeatable; phases run in the order given)")
    p.add_argument("--examples_per_second", action="append", default=[], metavar="X|SEQ=X",
                   help="training throughput, for all lengths or one (repeatable)")
    p.add_argument("--corpus_words", type=float, help="words in the corpus, for the control against Devlin")
    p.add_argument("--reference_corpus_words", type=float, default=DEVLIN_CORPUS_WORDS,
                   help="words in the reference corpus (default Devlin's 3.3e9)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        phases = [ph for path in args.phases_file for ph in read_phases_file(path)]
        phases += [parse_phase(text) for text in args.phase]
        if not phases:
            raise PlanError("give at least one --phase SEQ:STEPS:BATCH or --phases_file")
        manifests = [(path, read_manifest(path)) for path in args.manifest]
        given = [parse_seq_value(text, "--instances_per_epoch") for text in args.instances_per_epoch]
        plan = plan_schedule(phases, corpus_sizes(manifests, given), parse_rates(args.examples_per_second),
                             args.corpus_words, args.reference_corpus_words)
    except PlanError as e:
        print(f"bertbeam plan: {e}", file=sys.stderr)
        return 2
    print(json.dumps(plan_as_dict(plan), indent=2) if args.json else format_plan(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
