"""`bertbeam export --format hf`: a run's weights -> a folder transformers loads (config.json, model.safetensors,
tokenizer files of the dataset's vocabulary)."""
import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from training import hf_checkpoint, hf_tokenizer, model_configs, tf_checkpoint


class ExportError(ValueError):
    """The export cannot find what it needs (model config, vocabulary); the message names the flag to give."""


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    from training.input_pipeline import tf_module  # pylint: disable=import-outside-toplevel
    tf = tf_module()
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def _join(a: str, b: str) -> str:
    return a.rstrip("/") + "/" + b


def load_weights(checkpoint: str, bert_config_file: Optional[str] = None, albert_config_file: Optional[str] = None
                 ) -> Tuple[Dict[str, np.ndarray], model_configs.ModelConfig, Optional[str], int]:
    """(flat TF-name params, model config, run folder or None, step) of a bertbeam run/checkpoint or a TF1
    checkpoint (which needs --bert_config_file/--albert_config_file)."""
    from training import checkpoints  # pylint: disable=import-outside-toplevel
    from training.export import _run_dir_of  # pylint: disable=import-outside-toplevel
    if "://" not in checkpoint:
        checkpoint = os.path.abspath(checkpoint)  # Orbax wants absolute paths
    explicit = None
    if bert_config_file:
        explicit = model_configs.load_config_file(bert_config_file, albert=False)
    elif albert_config_file:
        explicit = model_configs.load_config_file(albert_config_file, albert=True)
    prefix = tf_checkpoint.resolve_tf_checkpoint(checkpoint)
    if prefix is not None:
        flat = tf_checkpoint.read_tf_checkpoint(prefix)
        if explicit is None:
            folder = prefix.rsplit("/", 1)[0] if "/" in prefix else "."
            for name, albert in (("albert_config.json", True), ("bert_config.json", False)):
                data = _read_json(_join(folder, name))
                if data is not None:
                    explicit = model_configs.from_dict(data, data.get("model_type", "albert" if albert else "bert"))
                    break
        if explicit is None:
            raise ExportError(f"{prefix}: a TF checkpoint; give --bert_config_file or --albert_config_file")
        from training.input_pipeline import tf_module  # pylint: disable=import-outside-toplevel
        reader = tf_module().train.load_checkpoint(prefix)
        step = int(reader.get_tensor("global_step")) if reader.has_tensor("global_step") else 0
        return flat, explicit, None, step
    params, _, meta = checkpoints.restore_init(checkpoint, with_opt_state=False)
    run_dir = _run_dir_of(checkpoint)
    cfg = explicit
    if cfg is None:
        data = _read_json(_join(run_dir, "bert_config.json"))
        if data is None:
            raise ExportError(f"{run_dir}/bert_config.json not found; give --bert_config_file/--albert_config_file")
        cfg = model_configs.from_dict(data, data.get("model_type", "bert"))
    return tf_checkpoint.flatten(params), cfg, run_dir, int(meta.get("step", 0))


def dataset_vocabulary(run_dir: Optional[str], pretrain_data: Optional[str]) -> Dict[str, Any]:
    """The vocabulary and casing the run's dataset was built with (its manifest.json): path, kind,
    do_lower_case, strip_accents, sha256, size. Empty when the dataset cannot be found."""
    data_dir = pretrain_data
    if data_dir is None and run_dir is not None:
        logs = _read_json(_join(run_dir, "run_logs.json")) or {}
        data_dir = (logs.get("dataset") or {}).get("path") or (logs.get("flags") or {}).get("pretrain_data")
    if not data_dir:
        return {}
    manifest = _read_json(_join(data_dir, "manifest.json"))
    if manifest is None:
        logging.warning("dataset %s has no manifest.json: tokenizer casing from the vocabulary's own config", data_dir)
        return {}
    vocab = dict(manifest.get("vocab") or {})
    path = vocab.get("path")
    if path and "://" not in path and not os.path.isabs(path) and not os.path.exists(path):
        candidate = os.path.join(data_dir, path)
        if os.path.exists(candidate):
            path = candidate
    return {"path": path, "kind": vocab.get("kind"), "sha256": vocab.get("sha256"), "size": vocab.get("size"),
            "do_lower_case": manifest.get("do_lower_case"), "strip_accents": manifest.get("strip_accents"),
            "data_dir": data_dir}


def export_hf(checkpoint: str, output_dir: str, vocab_file: Optional[str] = None,
              do_lower_case: Optional[bool] = None, strip_accents: Optional[bool] = None,
              pretrain_data: Optional[str] = None, bert_config_file: Optional[str] = None,
              albert_config_file: Optional[str] = None) -> Dict[str, Any]:
    """Writes OUTPUT_DIR/{config.json, model.safetensors, tokenizer files}; returns a summary."""
    if "://" in output_dir:
        raise ExportError(f"--output_dir {output_dir}: the Hugging Face export writes a local folder")
    flat, cfg, run_dir, step = load_weights(checkpoint, bert_config_file, albert_config_file)
    with_nsp = any(n.startswith("cls/seq_relationship/") for n in flat)
    if with_nsp and not any(n.startswith("bert/pooler/") for n in flat):
        raise ExportError(f"{checkpoint}: NSP/SOP head without a pooler")
    found = dataset_vocabulary(run_dir, pretrain_data)
    vocab_path = vocab_file or found.get("path")
    if not vocab_path:
        raise ExportError("cannot tell which vocabulary the model was trained with (no dataset manifest found "
                          "through the run's run_logs.json): give --vocab_file (vocab.txt or a SentencePiece "
                          ".model) or --pretrain_data")
    from training.input_pipeline import tf_module  # pylint: disable=import-outside-toplevel
    if not tf_module().io.gfile.exists(vocab_path):
        raise ExportError(f"vocabulary {vocab_path} (from the dataset manifest) not found: give --vocab_file")
    if vocab_file is None:
        do_lower_case = found.get("do_lower_case") if do_lower_case is None else do_lower_case
        strip_accents = found.get("strip_accents") if strip_accents is None else strip_accents
        if found.get("sha256"):
            from training.input_pipeline import file_sha256  # pylint: disable=import-outside-toplevel
            if file_sha256(vocab_path) != found["sha256"]:
                raise ExportError(f"{vocab_path} changed since the dataset was built (sha256 differs from "
                                  f"{found['data_dir']}/manifest.json): give --vocab_file with the original")
    from vocab.spm_model import load_any_vocab  # pylint: disable=import-outside-toplevel
    size = load_any_vocab(vocab_path).size
    if size != cfg.vocab_size:  # checked before anything is written
        raise ExportError(f"vocabulary {vocab_path} has {size} tokens but the model's vocab_size is "
                          f"{cfg.vocab_size}: give the --vocab_file the model was trained with")
    os.makedirs(output_dir, exist_ok=True)
    tok = hf_tokenizer.write_tokenizer(output_dir, vocab_path, do_lower_case, strip_accents,
                                       type_vocab_size=cfg.type_vocab_size,
                                       model_max_length=cfg.max_position_embeddings)
    state = hf_checkpoint.to_hf_state_dict(flat, cfg.is_albert)
    hf_checkpoint.write_safetensors(os.path.join(output_dir, hf_checkpoint.SAFETENSORS_NAME), state)
    config = hf_checkpoint.hf_config(cfg, with_nsp, tok["special_ids"])
    with open(os.path.join(output_dir, hf_checkpoint.CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return {"output_dir": output_dir, "architecture": config["architectures"][0], "step": step,
            "num_tensors": len(state), "vocab": vocab_path, "tokenizer": tok}
