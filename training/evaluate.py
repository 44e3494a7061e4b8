"""Held-out evaluation (`bertbeam evaluate`): google-research/bert's --do_eval metrics on a built dataset."""
import json
import logging
import os
import sys
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

# Dynamic-masking datasets are masked at load time; evaluation masks them with this fixed seed (and the batch
# index as the step), so two evaluations of the same records see the same masks whatever the training seed.
EVAL_MASK_SEED = 20181011
NSP_PARAM_PREFIXES = ("bert/pooler/", "cls/seq_relationship/")


class EvalError(ValueError):
    """The checkpoint or the evaluation data cannot be evaluated; the message names the path."""


def _abs(path: str) -> str:
    """Local paths become absolute at the boundary (Orbax and a changed cwd need it); URLs stay as given."""
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def _per_example_fn(model):
    """(params, batch) -> per-row sums: Σw·nll, Σw, Σw·correct over the masked positions, NSP/SOP nll and hit."""
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    def fn(params, batch):
        out = model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                          batch["masked_lm_positions"], True)
        logp = jax.nn.log_softmax(out["mlm_logits"].astype(jnp.float32), axis=-1)
        labels = batch["masked_lm_ids"]
        w = batch["masked_lm_weights"].astype(jnp.float32)
        nll = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
        rows = {"mlm_nll_w": (nll * w).sum(-1), "mlm_w": w.sum(-1),
                "mlm_correct": ((jnp.argmax(logp, -1) == labels) * w).sum(-1)}
        if out["nsp_logits"] is not None:
            nsp_logp = jax.nn.log_softmax(out["nsp_logits"].astype(jnp.float32), axis=-1)
            nsp_labels = batch["next_sentence_labels"]
            rows["nsp_nll"] = -jnp.take_along_axis(nsp_logp, nsp_labels[:, None], axis=-1)[:, 0]
            rows["nsp_correct"] = (jnp.argmax(nsp_logp, -1) == nsp_labels).astype(jnp.float32)
        return rows

    return jax.jit(fn)


def summarize(totals: Dict[str, float], num_examples: int, with_nsp: bool) -> Dict[str, Any]:
    """Summed per-example statistics -> the metrics of run_pretraining.py's --do_eval (BERT's formulas)."""
    out: Dict[str, Any] = {
        "masked_lm_accuracy": totals["mlm_correct"] / max(totals["mlm_w"], 1e-9),
        "lm_example_loss": totals["mlm_nll_w"] / (totals["mlm_w"] + 1e-5),
    }
    if with_nsp:
        out["next_sentence_accuracy"] = totals["nsp_correct"] / max(num_examples, 1)
        out["next_sentence_loss"] = totals["nsp_nll"] / max(num_examples, 1)
    out["num_examples"] = int(num_examples)
    return out


class Evaluator:
    """Evaluates parameter trees of one model on the first N records of a dataset (compiled once)."""

    def __init__(self, model_config, eval_data: str, max_eval_examples: int, eval_batch_size: int = 8):
        from training import input_pipeline, models  # pylint: disable=import-outside-toplevel
        if eval_batch_size < 1:
            raise EvalError(f"--eval_batch_size must be >= 1, got {eval_batch_size}")
        self.eval_data = _abs(eval_data)
        manifest = input_pipeline.read_manifest(self.eval_data)
        self.spec = input_pipeline.validate(manifest, self.eval_data, model_config,
                                            int(manifest.get("max_seq_length", 0)),
                                            int(manifest.get("max_predictions_per_seq", 0)))
        self.model_config = model_config
        self.max_eval_examples = int(max_eval_examples)
        self.batch_size = int(eval_batch_size)
        self.model = models.build_model(model_config, self.spec.with_nsp)  # float32, exact attention
        self._fn = _per_example_fn(self.model)
        self._masker = input_pipeline.DynamicMasker(self.spec, self.spec.max_predictions_per_seq, EVAL_MASK_SEED, 0) \
            if self.spec.masking == "dynamic" else None

    def batches(self) -> Iterator[Tuple[Dict[str, np.ndarray], int]]:
        """(batch padded to the batch size, number of real rows) in record order."""
        from training import input_pipeline  # pylint: disable=import-outside-toplevel
        ds = input_pipeline.make_sequential_dataset(self.spec, self.batch_size, self.max_eval_examples)
        for index, tensors in enumerate(ds):
            batch = {k: v.numpy() for k, v in tensors.items()}
            if self._masker is not None:
                batch = self._masker(batch, index)
            n = len(batch["input_ids"])
            if n < self.batch_size:  # pad by repeating row 0: one compiled shape; padded rows are not counted
                batch = {k: np.concatenate([v, np.repeat(v[:1], self.batch_size - n, axis=0)])
                         for k, v in batch.items()}
            yield batch, n

    def _fit_params(self, params: Any) -> Any:
        from training import tf_checkpoint  # pylint: disable=import-outside-toplevel
        flat = tf_checkpoint.flatten(params if isinstance(params, dict) else dict(params))
        has_nsp = any(n.startswith("cls/seq_relationship/") for n in flat)
        if self.spec.with_nsp and not has_nsp:
            raise EvalError(f"{self.eval_data} has {self.spec.pairing.upper()} labels but the model has no "
                            "cls/seq_relationship head (trained on MLM-only data?)")
        if not self.spec.with_nsp and has_nsp:  # MLM-only records: the pooler and NSP head are not used
            flat = {n: v for n, v in flat.items() if not n.startswith(NSP_PARAM_PREFIXES)}
        return tf_checkpoint.unflatten(flat)

    def __call__(self, params: Any) -> Dict[str, Any]:
        params = self._fit_params(params)
        totals: Dict[str, float] = {}
        count = 0
        for batch, n in self.batches():
            rows = self._fn(params, batch)
            for key, value in rows.items():
                totals[key] = totals.get(key, 0.0) + float(np.asarray(value, np.float64)[:n].sum())
            count += n
        if count == 0:
            raise EvalError(f"{self.eval_data}: no records to evaluate")
        return summarize(totals, count, self.spec.with_nsp)


def evaluate_params(model_config, params, eval_data: str, max_eval_examples: int,
                    eval_batch_size: int = 8) -> dict:
    """Metrics of a Flax parameter tree (the trainer's layout) on the first max_eval_examples records of
    eval_data (all when <= 0): masked_lm_accuracy, lm_example_loss, [next_sentence_accuracy,
    next_sentence_loss,] num_examples. No dropout; records in shard order, unshuffled."""
    return Evaluator(model_config, eval_data, max_eval_examples, eval_batch_size)(params)


def load_model_config(folder: str):
    """The model config saved with a run or an export: albert_config.json (ALBERT) or bert_config.json."""
    from training import model_configs  # pylint: disable=import-outside-toplevel
    from training.input_pipeline import tf_module  # pylint: disable=import-outside-toplevel
    tf = tf_module()
    for name, kind in (("albert_config.json", "albert"), ("bert_config.json", None)):
        path = folder.rstrip("/") + "/" + name
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "r") as f:
                data = json.loads(f.read())
            kind = kind or data.pop("model_type", "bert")
            data.pop("model_type", None)
            return model_configs.from_dict(data, kind)
    raise EvalError(f"{folder}: no bert_config.json or albert_config.json next to the checkpoint")


def load_checkpoint(checkpoint: str) -> Tuple[Any, Dict[str, Any], Optional[int]]:
    """A bertbeam run / checkpoints/STEP folder, or a TF1 checkpoint (bert_model.ckpt with its config json
    alongside) -> (model config, params, step)."""
    from training import checkpoints, tf_checkpoint  # pylint: disable=import-outside-toplevel
    from training.input_pipeline import tf_module  # pylint: disable=import-outside-toplevel
    checkpoint = _abs(checkpoint)
    from training import hf_checkpoint  # pylint: disable=import-outside-toplevel
    if hf_checkpoint.is_hf_folder(checkpoint):
        return _load_hf_folder(checkpoint)
    prefix = tf_checkpoint.resolve_tf_checkpoint(checkpoint)
    if prefix is not None:
        tf = tf_module()
        params = tf_checkpoint.unflatten(tf_checkpoint.read_tf_checkpoint(prefix))
        reader = tf.train.load_checkpoint(prefix)
        step = int(reader.get_tensor("global_step")) if reader.has_tensor("global_step") else None
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else "."
        return load_model_config(folder), params, step
    if not checkpoints.is_orbax_checkpoint(checkpoint):
        raise EvalError(f"--checkpoint {checkpoint}: neither a TF checkpoint nor a bertbeam run/checkpoint folder")
    params, _, meta = checkpoints.restore_init(checkpoint, with_opt_state=False)
    directory, _ = checkpoints.resolve_orbax(checkpoint)
    run_dir = directory[: -len(checkpoints.CHECKPOINT_SUBDIR)].rstrip("/") \
        if directory.rstrip("/").endswith("/" + checkpoints.CHECKPOINT_SUBDIR) else directory
    return load_model_config(run_dir), params, int(meta.get("step", 0))


def _load_hf_folder(folder: str) -> Tuple[Any, Dict[str, Any], Optional[int]]:
    """A transformers BERT/ALBERT folder (`bertbeam export --format hf`, or a published model): its config.json
    gives the model; every tensor of the model (heads included) must be in its weights."""
    import jax  # pylint: disable=import-outside-toplevel
    from training import hf_checkpoint, models, tf_checkpoint  # pylint: disable=import-outside-toplevel
    model_config = hf_checkpoint.model_config_from_hf(hf_checkpoint.read_hf_config(folder))
    architectures = hf_checkpoint.read_hf_config(folder).get("architectures") or []
    with_nsp = any(a.endswith("ForPreTraining") for a in architectures)
    model = models.build_model(model_config, with_nsp=with_nsp)
    # Shapes only: the weights all come from the folder.
    shapes = jax.eval_shape(lambda r: models.init_params(model, r, 8, 2), jax.random.PRNGKey(0))
    names = {n: tuple(v.shape) for n, v in tf_checkpoint.flatten(shapes).items()}
    found, report = hf_checkpoint.read_hf_folder(folder, names, model_config.is_albert)
    missing = sorted(set(names) - set(found))
    if missing:
        raise EvalError(f"{folder}: {report['file']} lacks {len(missing)} tensors the model needs, e.g. {missing[:3]}")
    return model_config, tf_checkpoint.unflatten(found), None


def evaluate_checkpoint(checkpoint: str, eval_data: str, max_eval_examples: int, eval_batch_size: int = 8) -> dict:
    """evaluate_params for a saved model (see load_checkpoint), plus its `step` (None if unknown)."""
    model_config, params, step = load_checkpoint(checkpoint)
    out = evaluate_params(model_config, params, eval_data, max_eval_examples, eval_batch_size)
    out["step"] = step
    return out


def format_summary(metrics: Dict[str, Any]) -> str:
    """The human summary (stderr), one metric a line like run_pretraining.py's `***** Eval results *****`."""
    lines = ["***** Eval results *****"]
    lines += [f"  {k} = {v:.6f}" if isinstance(v, float) else f"  {k} = {v}" for k, v in metrics.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from pipeline.flags import ArgumentParser  # pylint: disable=import-outside-toplevel  (plain argparse, no Beam)
    parser = ArgumentParser(prog="bertbeam evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True,
                        help="a run folder (latest step), its checkpoints/STEP, a TF bert_model.ckpt with its "
                             "bert_config.json/albert_config.json alongside, or a Hugging Face folder "
                             "(config.json + model.safetensors/pytorch_model.bin)")
    parser.add_argument("--eval_data", required=True, help="a dataset folder built by `bertbeam build`")
    parser.add_argument("--max_eval_examples", type=int, default=0,
                        help="evaluate the first N records (shard order); 0 = all")
    parser.add_argument("--eval_batch_size", type=int, default=8, help="records per evaluation batch")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    from training import input_pipeline, tf_checkpoint  # pylint: disable=import-outside-toplevel
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        metrics = evaluate_checkpoint(args.checkpoint, args.eval_data, args.max_eval_examples, args.eval_batch_size)
    except (EvalError, input_pipeline.DataError, tf_checkpoint.CheckpointError, FileNotFoundError) as e:
        print(f"bertbeam evaluate: {e}", file=sys.stderr)
        return 2
    print(format_summary(metrics), file=sys.stderr)
    print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
