"""Metrics with the seed runs' names: TensorBoard event files, run_logs.json, the console line."""
import json
import logging
import time
from typing import Any, Dict, List, Optional

from training import checkpoints

METRIC_NAMES = ("loss", "masked_lm_accuracy", "lm_example_loss", "next_sentence_accuracy", "next_sentence_loss",
                "lr", "examples_per_second")


def summarize(sums: Dict[str, float], steps: int, lr: float, examples_per_second: float,
              with_nsp: bool) -> Dict[str, float]:
    """Loop sums -> metrics: losses averaged over steps, accuracies over all weighted predictions."""
    out = {"loss": sums["loss"] / steps,
           "masked_lm_accuracy": sums["mlm_correct"] / max(sums["mlm_weight"], 1e-9),
           "lm_example_loss": sums["lm_example_loss"] / steps}
    if with_nsp:
        out["next_sentence_accuracy"] = sums["nsp_correct"] / max(sums["nsp_count"], 1e-9)
        out["next_sentence_loss"] = sums["next_sentence_loss"] / steps
    out["lr"] = lr
    out["examples_per_second"] = examples_per_second
    return out


def format_line(step: int, total: int, m: Dict[str, float]) -> str:
    """The seed's console line: `Train Step: 700000/700000  / loss = ... lr = ...`."""
    parts = [f"{k} = {m[k]:.6f}" for k in METRIC_NAMES if k in m and k != "examples_per_second"]
    return f"Train Step: {step}/{total}  / " + "  ".join(parts) + \
        f"  ({m.get('examples_per_second', 0):.1f} examples/second)"


def write_model_config(run_dir: str, model_cfg) -> None:
    """bert_config.json (and albert_config.json for ALBERT) in the run folder, next to checkpoints/.

    "hidden_act": "gelu" is kept in these TF1-layout files: google-research/bert and Model Garden read it as
    the tanh approximation the model computes (models.gelu_tanh). Transformers reads "gelu" as the exact
    form, so the Hugging Face export writes "gelu_new" instead.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tf.io.gfile.makedirs(run_dir)
    data = model_cfg.to_json_dict()
    checkpoints.write_json(_join(run_dir, "bert_config.json"), dict(data, model_type=model_cfg.model_type))
    if model_cfg.is_albert:
        checkpoints.write_json(_join(run_dir, "albert_config.json"), data)


def _join(a: str, b: str) -> str:
    return a.rstrip("/") + "/" + b


class MetricsWriter:
    """TensorBoard scalars under RUN_DIR/summaries/train and RUN_DIR/run_logs.json (chief host only)."""

    def __init__(self, run_dir: str, enabled: bool = True):
        self.run_dir = run_dir
        self.enabled = enabled
        self._writer = None
        self._started = time.time()

    def _tb(self):
        # Event files are TFRecords of `Event` protos: written with tf.io so gs:// works, with the protos
        # from tensorboardX (the tensorboard package is not needed to write them).
        if self._writer is None:
            import socket  # pylint: disable=import-outside-toplevel
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
            folder = _join(self.run_dir, "summaries/train")
            tf.io.gfile.makedirs(folder)
            name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
            self._writer = tf.io.TFRecordWriter(_join(folder, name))
            self._writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
                               .SerializeToString())
        return self._writer

    def write_scalars(self, step: int, metrics: Dict[str, float]) -> None:
        if not self.enabled:
            return
        from tensorboardX.proto import event_pb2, summary_pb2  # pylint: disable=import-outside-toplevel
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=name, simple_value=float(value))
                                             for name, value in metrics.items()])
        writer = self._tb()
        writer.write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary).SerializeToString())
        writer.flush()

    def load_history(self, start_step: int, key: str = "history") -> List[Dict[str, Any]]:
        """Earlier log entries of this run up to the resumed step (so run_logs.json spans preemptions);
        key "eval_history" for the evaluations."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        path = _join(self.run_dir, "run_logs.json")
        if not tf.io.gfile.exists(path):
            return []
        try:
            with tf.io.gfile.GFile(path, "r") as f:
                old = json.loads(f.read())
        except (ValueError, OSError):
            logging.warning("could not read %s; starting a new history", path)
            return []
        return [h for h in old.get(key, []) if h.get("step", 0) <= start_step]

    def write_run_logs(self, cfg, setup, history: List[Dict[str, Any]], step: int, total: int,
                       finished: bool, eval_history: Optional[List[Dict[str, Any]]] = None) -> None:
        if not self.enabled:
            return
        from training import config as config_lib  # pylint: disable=import-outside-toplevel
        last = history[-1] if history else {}
        data = {"total_training_steps": total, "step": step, "finished": finished,
                "train_loss": last.get("loss"), "last_metrics": last,
                "flags": config_lib.as_dict(cfg), "model_config": setup.model_cfg.to_json_dict(),
                "dataset": {"path": setup.spec.data_dir, "num_instances": setup.spec.num_instances,
                            "pairing": setup.spec.pairing, "masking": setup.spec.masking},
                "wall_time_this_launch_min": (time.time() - self._started) / 60.0,
                "history": history}
        if eval_history:  # Model Garden's eval_* names: eval_masked_lm_accuracy, eval_lm_example_loss, ...
            data["last_eval_metrics"] = eval_history[-1]
            data["eval_history"] = eval_history
        checkpoints.write_json(_join(self.run_dir, "run_logs.json"), data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
