"""Training configuration as code: one dataclass field per flag, the flag parser and --config files."""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence


@dataclasses.dataclass
class TrainConfig:
    """Every `bertbeam train` flag. Names and meanings follow the seed runs (covid-twitter-bert /
    TF Model Garden `run_pretrain.py`) and google-research/bert."""

    # --- the seed runs' flags ---
    run_prefix: str = "run"  # name of this run; its folder is OUTPUT_DIR/RUN_PREFIX (resumed if it exists)
    pretrain_data: str = ""  # dataset folder holding manifest.json + shards (local or gs://)
    model_class: str = ""  # registry name (bert_base, bert_multi_cased, albert_base_v2, ...) for dims/vocab
    train_batch_size: int = 32  # global batch (all hosts, all devices), examples per optimizer step
    num_epochs: int = 1  # "epochs" of num_steps_per_epoch steps each (a unit of steps, not data passes)
    num_steps_per_epoch: int = 1000  # steps per epoch; total steps = num_epochs * num_steps_per_epoch
    max_seq_length: int = 128  # must equal the dataset's max_seq_length
    max_predictions_per_seq: int = 20  # must equal the dataset's (static masking) / cap (dynamic masking)
    learning_rate: float = 1e-4  # peak learning rate, reached at the end of warm-up
    end_lr: float = 0.0  # polynomial (linear) decay target at the last step; = learning_rate -> constant
    warmup_steps: int = 10000  # linear warm-up 0 -> learning_rate over these global steps
    steps_per_loop: int = 100  # steps between metric logs (and the checkpoint unit)
    optimizer_type: str = "lamb"  # lamb | adamw
    init_checkpoint: str = ""  # TF1 BERT/ALBERT checkpoint prefix, or an earlier bertbeam run/checkpoint
    load_mlm_nsp_weights: Optional[bool] = None  # heads from init_checkpoint: unset = when it has them; False = random
    expect_partial: bool = False  # init_checkpoint: load model weights only (not the optimizer state)
    init_weights: bool = False  # random initialisation; never load a pretrained checkpoint
    start_step: int = -1  # global step a new run starts at (-1: an earlier bertbeam run's own step, else 0)
    # --- paths and model config ---
    output_dir: str = "output"  # runs live in OUTPUT_DIR/RUN_PREFIX (local or gs://)
    bert_config_file: str = ""  # original bert_config.json; overrides the model class's dims
    albert_config_file: str = ""  # original albert_config.json (ALBERT model); overrides the class's dims
    vocab_file: str = ""  # vocabulary to check the dataset's fingerprint against (default: the class's, if local)
    config: str = ""  # YAML/JSON file whose keys are these flag names; explicit flags win over it
    # --- bertbeam additions ---
    seed: int = 12345  # seeds init, dropout (fold_in(rng, step)), data order and dynamic masking
    dtype: str = "float32"  # compute dtype: float32 | bfloat16 (params, loss and logits stay float32)
    grad_accum_steps: int = 1  # split each batch into this many micro-batches (batches beyond memory)
    weight_decay: float = 0.01  # decoupled weight decay (LayerNorm and biases excluded)
    checkpoint_every_loops: int = 10  # save an Orbax checkpoint every steps_per_loop * this steps
    keep_checkpoints: int = 3  # keep the last K checkpoints
    shuffle_buffer: int = 10000  # records in the tf.data shuffle buffer (per host)
    cycle_length: int = 16  # shards read at once (interleave); capped at this host's shard count
    jax_distributed: bool = False  # call jax.distributed.initialize() (multi-host TPU/GPU pods)
    stop_after_steps: int = 0  # >0: stop this launch after so many steps (preemption drills, debugging)
    attention_impl: str = "xla"  # xla (exact, with attention dropout) | cudnn (fused; no attention dropout)
    checkpoint_every_secs: float = 0.0  # >0: also save when this many seconds passed since the last save
    eval_data: str = ""  # held-out dataset folder: evaluate (no dropout, first records in shard order)
    eval_every_steps: int = 0  # with --eval_data: evaluate every K global steps (and after the last step)
    max_eval_examples: int = 1000  # with --eval_data: records evaluated each time (0 = all)
    eval_batch_size: int = 8  # with --eval_data: records per evaluation batch


_BOOL_TRUE = {"true", "1", "yes", "t", "y"}
_BOOL_FALSE = {"false", "0", "no", "f", "n"}


class ConfigError(ValueError):
    """A bad flag, config file or flag combination."""


class HelpRequested(Exception):
    """--help was given; the message is the usage text."""


def _fields() -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


# Booleans whose default is None ("not given"): --load_mlm_nsp_weights unset restores the heads when the
# checkpoint has them (as run_pretraining.py), True requires them, False starts them from random.
OPTIONAL_BOOLS = ("load_mlm_nsp_weights",)


def _field_type(name: str) -> type:
    if name in OPTIONAL_BOOLS:
        return bool
    default = _fields()[name].default
    return type(default)


def parse_bool(value: Any, name: str = "") -> bool:
    """absl-style boolean values: True/true/1/yes and False/false/0/no."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _BOOL_TRUE:
        return True
    if text in _BOOL_FALSE:
        return False
    raise ConfigError(f"--{name}: expected a boolean, got {value!r}")


def _coerce(name: str, value: Any) -> Any:
    kind = _field_type(name)
    if kind is bool:
        return parse_bool(value, name)
    try:
        if kind is int:
            if isinstance(value, str):
                return int(float(value)) if ("e" in value.lower() or "." in value) else int(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind is float:
            return float(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--{name}: expected {kind.__name__}, got {value!r}") from e
    return "" if value is None else str(value)


def usage() -> str:
    """Help text: every flag with its default and the comment from this file."""
    lines = ["usage: bertbeam train [--flag=value ...]  (absl-style booleans: --flag, --noflag)", ""]
    comments = _field_comments()
    for name, field in _fields().items():
        lines.append(f"  --{name} (default {field.default!r}): {comments.get(name, '')}")
    return "\n".join(lines)


def _field_comments() -> Dict[str, str]:
    # The per-field comments in this file double as the flags' help text.
    comments: Dict[str, str] = {}
    with open(__file__, encoding="utf-8") as f:
        for line in f:
            stripped = line.strip()
            if ":" in stripped and "#" in stripped and not stripped.startswith("#"):
                name = stripped.split(":", 1)[0].strip()
                comments[name] = stripped.split("#", 1)[1].strip()
    return comments


def parse_argv(argv: Sequence[str]) -> Dict[str, Any]:
    """Explicit command-line flags -> {name: value}. Accepts --f=v, --f v, --f / --nof for booleans."""
    fields = _fields()
    out: Dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("-h", "--help", "-help", "--helpfull"):
            raise HelpRequested(usage())
        if not arg.startswith("-"):
            raise ConfigError(f"unexpected positional argument {arg!r}")
        body = arg.lstrip("-")
        name, has_value, value = body.partition("=")
        if name not in fields and name.startswith("no") and name[2:] in fields \
                and _field_type(name[2:]) is bool and not has_value:
            out[name[2:]] = False
            continue
        if name not in fields:
            import difflib  # pylint: disable=import-outside-toplevel
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise ConfigError(f"unknown flag --{name}{hint}\n\n{usage()}")
        if _field_type(name) is bool and not has_value:
            # `--flag` alone means True, unless the next token is an explicit boolean value.
            if i < len(args) and args[i].strip().lower() in _BOOL_TRUE | _BOOL_FALSE:
                value = args[i]
                i += 1
            else:
                value = "true"
        elif not has_value:
            if i >= len(args):
                raise ConfigError(f"--{name} needs a value")
            value = args[i]
            i += 1
        out[name] = _coerce(name, value)
    return out


def load_config_file(path: str) -> Dict[str, Any]:
    """Reads a YAML or JSON config whose keys are flag names (local or gs://)."""
    text = read_text(path)
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml  # pylint: disable=import-outside-toplevel
        data = yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of flag names to values")
    fields = _fields()
    out: Dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).lstrip("-")
        if name not in fields or name == "config":
            raise ConfigError(f"{path}: unknown key {key!r} (keys are `bertbeam train` flag names)")
        out[name] = _coerce(name, value)
    return out


def read_text(path: str) -> str:
    """A whole text file, local or gs:// (TensorFlow only for remote paths; no Beam, no JAX)."""
    if "://" in path:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        with tf.io.gfile.GFile(path, "r") as f:
            return f.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def build_config(argv: Sequence[str]) -> TrainConfig:
    """Defaults < --config file < explicit command-line flags; then validates."""
    explicit = parse_argv(argv)
    values: Dict[str, Any] = {}
    if explicit.get("config"):
        values.update(load_config_file(explicit["config"]))
    values.update(explicit)
    cfg = absolute_paths(TrainConfig(**values))
    validate(cfg)
    return cfg


PATH_FIELDS = ("pretrain_data", "init_checkpoint", "output_dir", "bert_config_file", "albert_config_file",
               "vocab_file", "config", "eval_data")


def absolute_path(path: str) -> str:
    """A local path made absolute (and ~ expanded); URLs (gs://...) and "" unchanged.

    Orbax refuses relative paths, and a relative path means a different file once anything changes the
    working directory, so every path flag is resolved once, here at the boundary, against the launch cwd.
    """
    if not path or "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with every path flag absolute (see absolute_path)."""
    return dataclasses.replace(cfg, **{name: absolute_path(getattr(cfg, name)) for name in PATH_FIELDS})


def validate(cfg: TrainConfig) -> None:
    """Checks flag values and combinations; raises ConfigError with the flag named."""
    problems: List[str] = []
    if not cfg.pretrain_data:
        problems.append("--pretrain_data is required (a dataset folder with manifest.json)")
    if cfg.optimizer_type not in ("lamb", "adamw"):
        problems.append(f"--optimizer_type must be lamb or adamw, got {cfg.optimizer_type!r}")
    if cfg.dtype not in ("float32", "bfloat16"):
        problems.append(f"--dtype must be float32 or bfloat16, got {cfg.dtype!r}")
    if cfg.attention_impl not in ("xla", "cudnn"):
        problems.append(f"--attention_impl must be xla or cudnn, got {cfg.attention_impl!r}")
    for name in ("train_batch_size", "num_epochs", "num_steps_per_epoch", "max_seq_length",
                 "max_predictions_per_seq", "steps_per_loop", "grad_accum_steps", "checkpoint_every_loops",
                 "keep_checkpoints", "cycle_length", "shuffle_buffer"):
        if getattr(cfg, name) < 1:
            problems.append(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.checkpoint_every_secs < 0:
        problems.append("--checkpoint_every_secs must be >= 0 (0: no time-based saves)")
    if cfg.eval_every_steps < 0 or cfg.eval_batch_size < 1:
        problems.append("--eval_every_steps must be >= 0 and --eval_batch_size >= 1")
    if cfg.eval_every_steps > 0 and not cfg.eval_data:
        problems.append("--eval_every_steps needs --eval_data (a held-out dataset folder)")
    if cfg.warmup_steps < 0:
        problems.append("--warmup_steps must be >= 0")
    if cfg.grad_accum_steps >= 1 and cfg.train_batch_size % cfg.grad_accum_steps:
        problems.append(f"--train_batch_size {cfg.train_batch_size} is not divisible by "
                        f"--grad_accum_steps {cfg.grad_accum_steps}")
    if cfg.bert_config_file and cfg.albert_config_file:
        problems.append("give --bert_config_file or --albert_config_file, not both")
    if cfg.init_weights and cfg.init_checkpoint:
        problems.append("--init_weights (random init) contradicts --init_checkpoint")
    if not cfg.model_class and not (cfg.bert_config_file or cfg.albert_config_file):
        problems.append("give --model_class or --bert_config_file/--albert_config_file")
    if problems:
        raise ConfigError("; ".join(problems))


def total_steps(cfg: TrainConfig) -> int:
    """The global step at which training ends: num_epochs * num_steps_per_epoch."""
    return cfg.num_epochs * cfg.num_steps_per_epoch


def run_dir(cfg: TrainConfig) -> str:
    """OUTPUT_DIR/RUN_PREFIX: checkpoints, summaries, run_logs.json, bert_config.json."""
    return os.path.join(cfg.output_dir, cfg.run_prefix) if "://" not in cfg.output_dir \
        else cfg.output_dir.rstrip("/") + "/" + cfg.run_prefix


def as_dict(cfg: TrainConfig) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)
