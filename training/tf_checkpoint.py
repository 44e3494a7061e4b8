"""Google TF1 BERT/ALBERT checkpoints (original variable names) <-> the Flax parameter tree.

The Flax tree's '/'-joined paths are the TF names (see models.py), so reading is: list the checkpoint,
skip optimizer slots, check names and shapes, copy. Writing uses SaveV2, the format tf.train.Saver and
tf.train.load_checkpoint read.
"""
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

# Variables that belong to optimizers or bookkeeping, never to the model.
_SKIP_PARTS = ("adam_m", "adam_v", "/lamb_m", "/lamb_v", "Momentum", "global_step", "_CHECKPOINTABLE_OBJECT_GRAPH",
               "beta1_power", "beta2_power", "good_steps", "loss_scale")
HEAD_PREFIX = "cls/"


class CheckpointError(ValueError):
    """A TF checkpoint does not fit the model; the message lists the names."""


def _tf():
    from training.input_pipeline import tf_module  # pylint: disable=import-outside-toplevel
    return tf_module()


def resolve_tf_checkpoint(path: str) -> Optional[str]:
    """A checkpoint prefix (bert_model.ckpt), its .index/.data file or a folder with a `checkpoint` file
    -> the prefix; None when the path is not a TF checkpoint."""
    tf = _tf()
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if ".data-" in path:
        path = path.split(".data-")[0]
    if tf.io.gfile.exists(path + ".index"):
        return path
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        for name in ("bert_model.ckpt", "model.ckpt-best", "model.ckpt"):
            candidate = path.rstrip("/") + "/" + name
            if tf.io.gfile.exists(candidate + ".index"):
                return candidate
    return None


def flatten(params: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested Flax params -> {'bert/encoder/layer_0/.../kernel': array}."""
    out: Dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict) or hasattr(value, "items"):
            out.update(flatten(dict(value), name))
        else:
            out[name] = value
    return out


def unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        parts = name.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def read_tf_checkpoint(path: str) -> Dict[str, np.ndarray]:
    """Model variables of a TF1 checkpoint by original name (optimizer slots and global_step skipped)."""
    tf = _tf()
    prefix = resolve_tf_checkpoint(path)
    if prefix is None:
        raise CheckpointError(f"{path}: not a TF checkpoint (no {path}.index)")
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(reader.get_variable_to_shape_map())
    model_names = [n for n in names if not any(p in n for p in _SKIP_PARTS)]
    if not any(n.startswith("bert/") for n in model_names):
        sample = ", ".join(names[:5])
        raise CheckpointError(f"{prefix}: no variables with the original BERT/ALBERT names (bert/...); found "
                              f"{sample}... This looks like a TF2 object-based checkpoint; convert it to the "
                              "TF1 name layout (Model Garden's tf2_encoder_checkpoint_converter) first")
    return {n: np.asarray(reader.get_tensor(n)) for n in model_names}


def load_into_params(params: Dict[str, Any], tf_vars: Dict[str, np.ndarray], load_heads: Optional[bool],
                     source: str = "checkpoint") -> Tuple[Dict[str, Any], Dict[str, List[str]]]:
    """Copies TF variables into a Flax param tree of the same names.

    The encoder (`bert/...`) must be complete with matching shapes. Heads (`cls/...`), by load_heads
    (--load_mlm_nsp_weights): None (flag not given) loads every head variable the checkpoint has, as
    run_pretraining.py restores every matching variable, and says at WARNING level which start from random
    (an encoder-only checkpoint, e.g. a TF2 export); True requires them (a missing head is an error, not a
    silent random start); False starts them from random. Returns (params, report).
    """
    flat = flatten(params)
    missing, mismatched, loaded, random_heads = [], [], [], []
    new_flat: Dict[str, Any] = {}
    for name, value in flat.items():
        is_head = name.startswith(HEAD_PREFIX)
        if is_head and (load_heads is False or (load_heads is None and name not in tf_vars)):
            new_flat[name] = value
            random_heads.append(name)
            continue
        if name not in tf_vars:
            missing.append(name)
            new_flat[name] = value
            continue
        src = tf_vars[name]
        if tuple(src.shape) != tuple(value.shape):
            mismatched.append(f"{name}: checkpoint {tuple(src.shape)} vs model {tuple(value.shape)}")
            continue
        new_flat[name] = np.asarray(src, dtype=np.float32)
        loaded.append(name)
    head_missing = [n for n in missing if n.startswith(HEAD_PREFIX)]
    body_missing = [n for n in missing if not n.startswith(HEAD_PREFIX)]
    problems = []
    if mismatched:
        problems.append("shape mismatch (wrong model class/config?):\n    " + "\n    ".join(mismatched[:20]))
    if body_missing:
        problems.append("missing encoder variables:\n    " + "\n    ".join(body_missing[:20]))
    if head_missing:
        problems.append("--load_mlm_nsp_weights was given but the checkpoint lacks head variables (official TF2 "
                        "checkpoints often have no MLM/NSP heads; drop the flag to start the heads from random):"
                        "\n    " + "\n    ".join(head_missing[:20]))
    if problems:
        raise CheckpointError(f"{source}: " + "\n  ".join(problems))
    unused = sorted(set(tf_vars) - set(flat))
    if unused:
        logging.info("%s: %d checkpoint variables not used by this model (e.g. %s)", source, len(unused), unused[:3])
    if random_heads and load_heads is False:
        logging.info("%s: heads start from random (--load_mlm_nsp_weights=False): %s", source, random_heads)
    elif random_heads:
        logging.warning("%s: the checkpoint has no MLM/NSP head variable %s (an encoder-only checkpoint?): "
                        "%s start from random", source, ", ".join(random_heads[:8]),
                        "these heads" if len(random_heads) < len([n for n in flat if n.startswith(HEAD_PREFIX)])
                        else "the heads")
    return unflatten(new_flat), {"loaded": loaded, "random_heads": random_heads, "unused": unused}


def write_tf_checkpoint(params: Dict[str, Any], prefix: str, global_step: Optional[int] = None) -> str:
    """Writes params as a TF1-name checkpoint PREFIX.{index,data-00000-of-00001} + a `checkpoint` file."""
    tf = _tf()
    flat = {n: np.asarray(v, dtype=np.float32) for n, v in flatten(params).items()}
    names = sorted(flat)
    tensors = [tf.constant(flat[n]) for n in names]
    if global_step is not None:
        names.append("global_step")
        tensors.append(tf.constant(int(global_step), dtype=tf.int64))
    folder = prefix.rsplit("/", 1)[0] if "/" in prefix else "."
    tf.io.gfile.makedirs(folder)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    base = prefix.rsplit("/", 1)[-1]
    with tf.io.gfile.GFile(folder + "/checkpoint", "w") as f:
        f.write(f'model_checkpoint_path: "{base}"\nall_model_checkpoint_paths: "{base}"\n')
    return prefix
