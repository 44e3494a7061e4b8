"""`bertbeam train` / `python -m training.run_pretrain`: flags -> TrainConfig -> training.train.train."""
import logging
import os
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses the seed runs' flags (and --config FILE), sets up JAX (multi-host if asked) and trains."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not {"-h", "--help", "--helpfull"} & set(argv):
        # TensorFlow (tf.data) first, while this is the only thread: its native start-up lines are held back.
        from training.input_pipeline import tf_module  # pylint: disable=import-outside-toplevel
        tf_module()
    from training import config as config_lib  # pylint: disable=import-outside-toplevel
    from training import run_pretraining_flags  # pylint: disable=import-outside-toplevel
    if "--quiet" in argv:  # no progress lines on stderr (the per-loop metrics lines stay)
        argv = [a for a in argv if a != "--quiet"]
        os.environ["BERTBEAM_QUIET"] = "1"
    try:
        argv, notes = run_pretraining_flags.translate(argv)  # ALBERT/BERT run_pretraining.py spellings
        cfg = config_lib.build_config(argv)
    except config_lib.HelpRequested as e:
        print(e)
        return 0
    except config_lib.ConfigError as e:
        print(f"bertbeam train: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for note in notes:
        logging.info("run_pretraining.py flags: %s", note)
    for noisy in ("absl", "orbax", "jax", "tensorflow"):  # Orbax logs every file it writes at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import jax  # pylint: disable=import-outside-toplevel
    if cfg.jax_distributed:
        jax.distributed.initialize()  # coordinator/process ids from the TPU/GPU cluster environment
    from training import evaluate, input_pipeline, tf_checkpoint, train  # pylint: disable=import-outside-toplevel
    try:
        result = train.train(cfg)
    except (config_lib.ConfigError, input_pipeline.DataError, tf_checkpoint.CheckpointError,
            evaluate.EvalError) as e:
        print(f"bertbeam train: {e}", file=sys.stderr)
        return 2
    why = f" ({result['preempted']}: checkpoint saved, relaunch to resume)" if result.get("preempted") else ""
    print(f"bertbeam train: stopped at step {result['step']}{why}", flush=True)
    return 0  # a preempted run saved its state: exit 0 so a supervisor relaunches rather than gives up


if __name__ == "__main__":
    sys.exit(main())
