"""Orbax checkpoints of a run (params, optimizer state, step, data position), resume and init loading."""
import json
import logging
import os
import re
from typing import Any, Dict, Optional, Tuple

import jax
import numpy as np

CHECKPOINT_SUBDIR = "checkpoints"
DATA_STATE_SUBDIR = "data_state"


def _ocp():
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    return ocp


def _join(*parts: str) -> str:
    if "://" in parts[0]:
        return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))
    return os.path.join(*parts)


def absolute(path: str) -> str:
    """Orbax refuses relative paths: local paths are made absolute (against the cwd now); URLs unchanged."""
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def make_manager(run_dir: str, keep: int):
    """A CheckpointManager for RUN_DIR/checkpoints keeping the last `keep` steps."""
    ocp = _ocp()
    run_dir = absolute(run_dir)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(_join(run_dir, CHECKPOINT_SUBDIR), options=options,
                                 item_names=("params", "opt_state", "meta"))


def save(manager, step: int, params: Any, opt_state: Any, meta: Dict[str, Any]) -> None:
    """Saves params, optimizer state and a JSON meta item (step, data position, flags) at `step`."""
    ocp = _ocp()
    manager.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                               opt_state=ocp.args.StandardSave(opt_state),
                                               meta=ocp.args.JsonSave(dict(meta, step=int(step)))), force=True)


def restore_full(manager, step: int, abstract_params: Any, abstract_opt_state: Any
                 ) -> Tuple[Any, Any, Dict[str, Any]]:
    """Restores everything into the given abstract (shape/dtype/sharding) trees."""
    ocp = _ocp()
    out = manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params), opt_state=ocp.args.StandardRestore(abstract_opt_state),
        meta=ocp.args.JsonRestore()))
    return out["params"], out["opt_state"], dict(out["meta"])


def data_state_prefix(run_dir: str, step: int, process_index: int) -> str:
    """Where host `process_index` keeps its tf.data iterator state for checkpoint `step`."""
    return _join(run_dir, DATA_STATE_SUBDIR, str(step), f"process_{process_index}", "iterator")


def prune_data_states(run_dir: str, kept_steps) -> None:
    """Deletes iterator states of checkpoints Orbax has already dropped."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    root = _join(run_dir, DATA_STATE_SUBDIR)
    if not tf.io.gfile.exists(root):
        return
    kept = {str(s) for s in kept_steps}
    for name in tf.io.gfile.listdir(root):
        name = name.rstrip("/")
        if name.isdigit() and name not in kept:
            tf.io.gfile.rmtree(_join(root, name))


def resolve_orbax(path: str) -> Tuple[str, Optional[int]]:
    """An earlier run's folder, its checkpoints/ folder or one step folder -> (manager dir, step or None)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    path = absolute(path).rstrip("/")
    if tf.io.gfile.isdir(_join(path, CHECKPOINT_SUBDIR)):
        return _join(path, CHECKPOINT_SUBDIR), None
    base = path.rsplit("/", 1)[-1]
    if re.fullmatch(r"\d+", base):
        return path[: -len(base)].rstrip("/"), int(base)
    return path, None


def is_orbax_checkpoint(path: str) -> bool:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    directory, step = resolve_orbax(path)
    if not tf.io.gfile.isdir(directory):
        return False
    if step is not None:
        return tf.io.gfile.isdir(_join(directory, str(step)))
    return any(n.rstrip("/").isdigit() for n in tf.io.gfile.listdir(directory))


def restore_init(path: str, with_opt_state: bool) -> Tuple[Dict[str, Any], Optional[Any], Dict[str, Any]]:
    """Reads an earlier bertbeam checkpoint as saved (host numpy trees): (params, opt_state|None, meta)."""
    ocp = _ocp()
    directory, step = resolve_orbax(path)
    manager = ocp.CheckpointManager(directory, item_names=("params", "opt_state", "meta"))
    if step is None:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{path}: no checkpoints found")
    items = dict(params=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    if with_opt_state:
        items["opt_state"] = ocp.args.StandardRestore()
    out = manager.restore(step, args=ocp.args.Composite(**items))
    meta = dict(out["meta"])
    meta.setdefault("step", step)
    params = jax.tree.map(np.asarray, out["params"])
    opt_state = out["opt_state"] if with_opt_state else None
    manager.close()
    logging.info("read bertbeam checkpoint %s step %d", directory, step)
    return params, opt_state, meta


def write_json(path: str, data: Dict[str, Any]) -> None:
    """Writes JSON atomically where the filesystem allows (tmp + rename)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=False, default=str))
    tf.io.gfile.rename(tmp, path, overwrite=True)
