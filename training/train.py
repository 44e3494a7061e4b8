"""Pretraining loop: loss/metrics, data-parallel jitted step with gradient accumulation, resume, logging."""
import dataclasses
import glob
import logging
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from training import checkpoints, config as config_lib, input_pipeline, metrics as metrics_lib
from training import model_configs, models, optimizers, preemption, schedules, tf_checkpoint

# Per-step sums; the loop adds them up and metrics_lib turns them into the seed's metric names.
SUM_KEYS = ("loss", "lm_example_loss", "next_sentence_loss", "mlm_correct", "mlm_weight", "nsp_correct",
            "nsp_count")


def loss_and_metrics(model: models.PretrainingModel, params: Any, batch: Dict[str, jax.Array],
                     dropout_rng: Optional[jax.Array], deterministic: bool,
                     mlm_weight_sum: Optional[jax.Array] = None, nsp_count: Optional[jax.Array] = None
                     ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """google-research/bert's pretraining loss: weighted mean MLM loss + mean NSP/SOP loss, in float32.

    A micro-batch of an accumulated step passes the whole batch's Σ masked_lm_weights and example count: its
    loss is then its share of the whole batch's loss, so the micro-batches' losses (and gradients) add up to
    exactly the unaccumulated ones."""
    out = model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                      batch["masked_lm_positions"], deterministic,
                      rngs=None if deterministic else {"dropout": dropout_rng})
    logp = jax.nn.log_softmax(out["mlm_logits"].astype(jnp.float32), axis=-1)
    labels = batch["masked_lm_ids"]
    weights = batch["masked_lm_weights"].astype(jnp.float32)
    per = -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
    weight_sum = weights.sum()
    mlm_loss = (per * weights).sum() / ((weight_sum if mlm_weight_sum is None else mlm_weight_sum) + 1e-5)
    correct = ((jnp.argmax(logp, -1) == labels) * weights).sum()
    stats = {"lm_example_loss": mlm_loss, "mlm_correct": correct, "mlm_weight": weight_sum,
             "next_sentence_loss": jnp.zeros((), jnp.float32), "nsp_correct": jnp.zeros((), jnp.float32),
             "nsp_count": jnp.zeros((), jnp.float32)}
    loss = mlm_loss
    if out["nsp_logits"] is not None:
        nsp_logp = jax.nn.log_softmax(out["nsp_logits"].astype(jnp.float32), axis=-1)
        nsp_labels = batch["next_sentence_labels"]
        nsp_nll = -jnp.take_along_axis(nsp_logp, nsp_labels[:, None], axis=-1)
        nsp_loss = nsp_nll.mean() if nsp_count is None else nsp_nll.sum() / nsp_count
        stats.update(next_sentence_loss=nsp_loss,
                     nsp_correct=(jnp.argmax(nsp_logp, -1) == nsp_labels).sum().astype(jnp.float32),
                     nsp_count=jnp.asarray(nsp_labels.shape[0], jnp.float32))
        loss = loss + nsp_loss
    stats["loss"] = loss
    return loss, stats


def make_train_step(model: models.PretrainingModel, tx: optax.GradientTransformation, grad_accum_steps: int,
                    dropout_rng: jax.Array, deterministic: bool = False) -> Callable:
    """(params, opt_state, step, batch) -> (params, opt_state, step+1, sums). Dropout key: fold_in(rng, step);
    learning rate: the schedule at `step`, the global step (tx gets it as update(..., global_step=step))."""
    tx = optax.with_extra_args_support(tx)

    def grads_of(params, batch, rng, mlm_weight_sum=None, nsp_count=None):
        return jax.value_and_grad(lambda p: loss_and_metrics(model, p, batch, rng, deterministic, mlm_weight_sum,
                                                             nsp_count), has_aux=True)(params)

    def step_fn(params, opt_state, step, batch):
        rng = jax.random.fold_in(dropout_rng, step)
        if grad_accum_steps == 1:
            (_, stats), grads = grads_of(params, batch, rng)
        else:
            k = grad_accum_steps
            # Rows b, b+k, b+2k... form one micro-batch, so each spans every device's shard.
            micro = jax.tree.map(lambda x: jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1), batch)

            # Each micro-batch's loss is normalised by the whole batch (Σ masked_lm_weights, example count), so
            # the summed losses and gradients are the whole batch's, not a mean of per-micro-batch means.
            weight_sum = batch["masked_lm_weights"].astype(jnp.float32).sum()
            count = jnp.asarray(batch["input_ids"].shape[0], jnp.float32)

            def body(carry, inputs):
                i, mb = inputs
                (_, st), g = grads_of(params, mb, jax.random.fold_in(rng, i), weight_sum, count)
                acc_g, acc_s = carry
                return (jax.tree.map(jnp.add, acc_g, g), jax.tree.map(jnp.add, acc_s, st)), None

            zeros_g = jax.tree.map(jnp.zeros_like, params)
            zeros_s = {key: jnp.zeros((), jnp.float32) for key in SUM_KEYS}
            (grads, stats), _ = jax.lax.scan(body, (zeros_g, zeros_s), (jnp.arange(k), micro))
        # The schedule reads the global step (continued phases, fresh optimizer states), not optax's counter.
        updates, opt_state = tx.update(grads, opt_state, params, global_step=step)
        params = optax.apply_updates(params, updates)
        return params, opt_state, step + 1, {key: stats[key].astype(jnp.float32) for key in SUM_KEYS}

    return step_fn


@dataclasses.dataclass
class Setup:
    """Everything built from the config before the loop runs."""

    cfg: config_lib.TrainConfig
    model_cfg: model_configs.ModelConfig
    model_class: Optional[model_configs.ModelClass]
    spec: input_pipeline.DataSpec
    model: models.PretrainingModel
    tx: optax.GradientTransformation
    schedule: Callable
    mesh: Mesh
    run_dir: str


def resolve_model_config(cfg: config_lib.TrainConfig) -> Tuple[model_configs.ModelConfig,
                                                                Optional[model_configs.ModelClass]]:
    """--bert_config_file / --albert_config_file win over --model_class dims."""
    mc = model_configs.get_model_class(cfg.model_class) if cfg.model_class else None
    if cfg.bert_config_file:
        return model_configs.load_config_file(cfg.bert_config_file, albert=False), mc
    if cfg.albert_config_file:
        return model_configs.load_config_file(cfg.albert_config_file, albert=True), mc
    return mc.model, mc


def _vocab_fingerprint(cfg: config_lib.TrainConfig, mc: Optional[model_configs.ModelClass]) -> Optional[str]:
    path = cfg.vocab_file or (mc.vocab_path if mc else None)
    if not path:
        return None
    if not cfg.vocab_file and "://" in path:
        logging.info("vocabulary fingerprint not checked: model class vocab %s is remote (give --vocab_file)", path)
        return None
    tf = input_pipeline.tf_module()
    if not tf.io.gfile.exists(path):
        if cfg.vocab_file:
            raise input_pipeline.DataError(f"--vocab_file {path} not found")
        logging.info("vocabulary fingerprint not checked: %s not found", path)
        return None
    return input_pipeline.file_sha256(path)


def _fit_vocab_from_scratch(cfg: config_lib.TrainConfig, model_cfg: model_configs.ModelConfig,
                            manifest: dict) -> model_configs.ModelConfig:
    """A model trained from scratch (--init_weights, no checkpoint, no config file) takes the dataset's
    vocabulary size: a model class names the architecture, the dataset names the vocabulary."""
    size = (manifest.get("vocab") or {}).get("size")
    from_scratch = cfg.init_weights and not cfg.init_checkpoint
    explicit = cfg.bert_config_file or cfg.albert_config_file
    if from_scratch and not explicit and size and size != model_cfg.vocab_size:
        logging.info("training from scratch: vocab_size %d taken from the dataset (model class had %d)",
                     size, model_cfg.vocab_size)
        return dataclasses.replace(model_cfg, vocab_size=int(size))
    return model_cfg


def resolve_init(cfg: config_lib.TrainConfig, mc: Optional[model_configs.ModelClass]) -> config_lib.TrainConfig:
    """Neither --init_checkpoint nor a model class with a pretrained checkpoint: random initial weights, as
    google-research/bert's run_pretraining.py starts without --init_checkpoint (--init_weights)."""
    source = cfg.init_checkpoint
    if source and "://" not in source and not (os.path.exists(source) or glob.glob(glob.escape(source) + ".*")):
        # Checked before the dataset, the model or the optimizer are built.
        raise config_lib.ConfigError(f"--init_checkpoint {source}: no such file, folder or checkpoint prefix")
    if cfg.init_weights or cfg.init_checkpoint or (mc is not None and mc.init_checkpoint):
        return cfg
    logging.info("no --init_checkpoint: random initial weights, as run_pretraining.py (--init_weights)")
    return dataclasses.replace(cfg, init_weights=True)


def build_setup(cfg: config_lib.TrainConfig) -> Setup:
    model_cfg, mc = resolve_model_config(cfg)
    cfg = resolve_init(cfg, mc)
    manifest = input_pipeline.read_manifest(cfg.pretrain_data)
    model_cfg = _fit_vocab_from_scratch(cfg, model_cfg, manifest)
    spec = input_pipeline.validate(manifest, cfg.pretrain_data, model_cfg, cfg.max_seq_length,
                                   cfg.max_predictions_per_seq, _vocab_fingerprint(cfg, mc))
    model = models.build_model(model_cfg, spec.with_nsp, cfg.dtype, cfg.attention_impl)
    total = config_lib.total_steps(cfg)
    schedule = schedules.learning_rate_fn(cfg.learning_rate, cfg.end_lr, cfg.warmup_steps, total)
    tx = optimizers.create_optimizer(cfg.optimizer_type, schedule, cfg.weight_decay)
    n_dev = jax.device_count()
    if cfg.train_batch_size % n_dev:
        raise config_lib.ConfigError(f"--train_batch_size {cfg.train_batch_size} is not divisible by the "
                                     f"{n_dev} devices")
    if (cfg.train_batch_size // cfg.grad_accum_steps) % n_dev:
        raise config_lib.ConfigError(f"micro-batch {cfg.train_batch_size // cfg.grad_accum_steps} is not "
                                     f"divisible by the {n_dev} devices")
    mesh = Mesh(np.array(jax.devices()), ("data",))
    return Setup(cfg, model_cfg, mc, spec, model, tx, schedule, mesh, config_lib.run_dir(cfg))


def _initial_params(setup: Setup, rng: jax.Array) -> Tuple[Any, Optional[Any], int, str]:
    """(params, opt_state or None, start step, description) for a run without its own checkpoint.

    The start step is --start_step when given (>= 0), else the step of an earlier bertbeam run, else 0:
    the schedule is evaluated at the global step, so a later phase continues where the earlier ended.
    """
    params, opt_state, step, origin = _initial_weights(setup, rng)
    if setup.cfg.start_step >= 0 and setup.cfg.start_step != step:
        origin += f"; global step set to --start_step={setup.cfg.start_step} (checkpoint had {step})"
        step = setup.cfg.start_step
    return params, opt_state, step, origin


def _initial_weights(setup: Setup, rng: jax.Array) -> Tuple[Any, Optional[Any], int, str]:
    cfg = setup.cfg
    params = models.init_params(setup.model, rng, cfg.max_seq_length, cfg.max_predictions_per_seq)
    params = jax.tree.map(np.asarray, params)
    if cfg.init_weights:
        return params, None, 0, "random initialisation (--init_weights)"
    source = config_lib.absolute_path(cfg.init_checkpoint or
                                      (setup.model_class.init_checkpoint if setup.model_class else None) or "")
    if not source:
        raise config_lib.ConfigError(
            "no weights to start from: give --init_checkpoint (a TF BERT/ALBERT checkpoint such as "
            ".../multi_cased_L-12_H-768_A-12/bert_model.ckpt, or an earlier bertbeam run) or --init_weights "
            "for a random start")
    from training import hf_checkpoint  # pylint: disable=import-outside-toplevel
    if hf_checkpoint.is_hf_folder(source):  # a transformers BERT/ALBERT folder (safetensors or .bin)
        params, what = hf_checkpoint.load_into(params, source, cfg.load_mlm_nsp_weights, setup.model_cfg.is_albert)
        return params, None, 0, what
    tf_prefix = tf_checkpoint.resolve_tf_checkpoint(source)
    if tf_prefix is not None:
        tf_vars = tf_checkpoint.read_tf_checkpoint(tf_prefix)
        params, report = tf_checkpoint.load_into_params(params, tf_vars, cfg.load_mlm_nsp_weights, tf_prefix)
        return params, None, 0, f"TF checkpoint {tf_prefix} ({len(report['loaded'])} variables)"
    if not checkpoints.is_orbax_checkpoint(source):
        raise config_lib.ConfigError(f"--init_checkpoint {source}: neither a TF checkpoint (no .index) nor a "
                                     "bertbeam run/checkpoint folder")
    want_opt = not cfg.expect_partial
    if want_opt and cfg.load_mlm_nsp_weights is False:
        raise config_lib.ConfigError("--init_checkpoint with --load_mlm_nsp_weights=False starts the heads from "
                                     "random, so the optimizer state cannot be reused: add --expect_partial")
    src_params, src_opt, meta = checkpoints.restore_init(source, with_opt_state=want_opt)
    flat = {n: v for n, v in tf_checkpoint.flatten(src_params).items()}
    # With its optimizer state the checkpoint's heads are required (the state holds their moments).
    load_heads = True if want_opt and cfg.load_mlm_nsp_weights is None else cfg.load_mlm_nsp_weights
    params, _ = tf_checkpoint.load_into_params(params, flat, load_heads, source)
    step = int(meta.get("step", 0))
    return params, src_opt, step, f"bertbeam checkpoint {source} at step {step}" + \
        (" (weights only, --expect_partial)" if not want_opt else "")


def train(cfg: config_lib.TrainConfig) -> Dict[str, Any]:
    """Runs (or resumes) training to num_epochs * num_steps_per_epoch global steps; returns the last metrics.

    SIGTERM/SIGINT finish the current step, save and return (result["preempted"] names the signal).
    """
    cfg = config_lib.absolute_paths(cfg)  # Orbax needs absolute paths; resolve against the launch cwd once
    with preemption.StopAndSaveSignals() as signals:
        return _train(cfg, signals)


def _train(cfg: config_lib.TrainConfig, signals: preemption.StopAndSaveSignals) -> Dict[str, Any]:
    setup = build_setup(cfg)
    cfg = setup.cfg  # with --init_weights set when there are no weights to start from
    run_dir, mesh, spec = setup.run_dir, setup.mesh, setup.spec
    total = config_lib.total_steps(cfg)
    is_chief = jax.process_index() == 0
    replicated = NamedSharding(mesh, P())
    data_sharding = NamedSharding(mesh, P("data"))
    root_rng = jax.random.PRNGKey(cfg.seed)
    init_rng, dropout_rng = jax.random.split(root_rng)

    manager = checkpoints.make_manager(run_dir, cfg.keep_checkpoints)
    writer = metrics_lib.MetricsWriter(run_dir, enabled=is_chief)
    if is_chief:
        metrics_lib.write_model_config(run_dir, setup.model_cfg)

    # Abstract state to restore into / build the optimizer state for.
    params_shape = jax.eval_shape(lambda r: models.init_params(setup.model, r, cfg.max_seq_length,
                                                               cfg.max_predictions_per_seq), init_rng)
    abstract_params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                                   params_shape)
    abstract_opt = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                                jax.eval_shape(setup.tx.init, params_shape))

    latest = manager.latest_step()
    data_restore: Optional[str] = None
    if latest is not None:
        try:
            params, opt_state, meta = checkpoints.restore_full(manager, latest, abstract_params, abstract_opt)
        except ValueError as e:
            raise config_lib.ConfigError(
                f"{run_dir}: checkpoint {latest} holds an optimizer state this run cannot restore (another "
                "--optimizer_type, or written before the learning rate came from the global step). Continue it as "
                f"a new run: --init_checkpoint={run_dir} --expect_partial --load_mlm_nsp_weights and another "
                f"--run_prefix (weights only; the global step continues). Orbax: {str(e).splitlines()[0]}") from e
        start_step = int(meta["step"])
        origin = f"resumed {run_dir} at step {start_step}"
        data_restore = checkpoints.data_state_prefix(run_dir, latest, jax.process_index())
    else:
        host_params, host_opt, start_step, origin = _initial_params(setup, init_rng)
        params = jax.device_put(host_params, replicated)
        opt_state = None
        if host_opt is not None:
            try:
                opt_state = jax.tree.unflatten(jax.tree.structure(abstract_opt), jax.tree.leaves(host_opt))
                opt_state = jax.device_put(opt_state, replicated)
            except ValueError as e:
                raise config_lib.ConfigError(f"optimizer state of --init_checkpoint does not fit "
                                             f"--optimizer_type {cfg.optimizer_type}: use --expect_partial ({e})")
        if opt_state is None:
            opt_state = jax.jit(setup.tx.init, out_shardings=replicated)(params)
    logging.info("%s", origin)
    print(f"bertbeam train: {origin}; training to step {total}", flush=True)

    # Input for this host, positioned where the checkpoint left off.
    files = input_pipeline.host_files(spec.files, jax.process_index(), jax.process_count())
    per_host_batch = cfg.train_batch_size // jax.process_count()
    ds = input_pipeline.make_dataset(spec, files, per_host_batch, cfg.seed + jax.process_index(),
                                     cfg.shuffle_buffer, cfg.cycle_length)
    masker = input_pipeline.DynamicMasker(spec, cfg.max_predictions_per_seq, cfg.seed, jax.process_index()) \
        if spec.masking == "dynamic" else None
    iterator = input_pipeline.InputIterator(ds, masker)
    if data_restore is not None:
        tf = input_pipeline.tf_module()
        if tf.io.gfile.exists(data_restore + ".index"):
            iterator.restore(data_restore)
        else:
            logging.warning("no data position saved for step %d on this host: the input starts a new pass",
                            latest)

    step_fn = make_train_step(setup.model, setup.tx, cfg.grad_accum_steps, dropout_rng)
    p_step = jax.jit(step_fn, in_shardings=(replicated, replicated, replicated, data_sharding),
                     out_shardings=(replicated, replicated, replicated, replicated), donate_argnums=(0, 1))

    def global_batch(local: Dict[str, np.ndarray]) -> Dict[str, jax.Array]:
        return {k: jax.make_array_from_process_local_data(data_sharding, v) for k, v in local.items()}

    def save(step_now: int) -> None:
        iterator.save(checkpoints.data_state_prefix(run_dir, step_now, jax.process_index()))
        checkpoints.save(manager, step_now, params, opt_state,
                         {"run_prefix": cfg.run_prefix, "examples_seen": step_now * cfg.train_batch_size})
        manager.wait_until_finished()  # donated buffers must not be read by a pending save
        if is_chief:
            checkpoints.prune_data_states(run_dir, manager.all_steps())

    history = writer.load_history(start_step)
    eval_history = writer.load_history(start_step, key="eval_history")
    evaluator = None
    if cfg.eval_data:
        from training import evaluate  # pylint: disable=import-outside-toplevel
        evaluator = evaluate.Evaluator(setup.model_cfg, cfg.eval_data, cfg.max_eval_examples, cfg.eval_batch_size)

    def run_eval(step_now: int) -> None:
        metrics = {f"eval_{k}": v for k, v in evaluator(params).items()}
        eval_history.append(dict(step=step_now, **metrics))
        writer.write_scalars(step_now, {k: v for k, v in metrics.items() if k != "eval_num_examples"})
        print(f"Eval Step: {step_now}/{total}  / " + "  ".join(
            f"{k} = {v:.6f}" for k, v in metrics.items() if k != "eval_num_examples") +
            f"  ({metrics['eval_num_examples']} examples)", flush=True)

    step = start_step
    step_arr = jax.device_put(jnp.asarray(step, jnp.int32), replicated)
    ckpt_every = cfg.steps_per_loop * cfg.checkpoint_every_loops
    stop_at = min(total, start_step + cfg.stop_after_steps) if cfg.stop_after_steps > 0 else total
    last: Dict[str, Any] = {}
    loop_sums = None
    add_sums = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b))
    lr_at = jax.jit(setup.schedule)
    loop_start, loop_steps = time.time(), 0
    clock = preemption.SaveClock(cfg.checkpoint_every_secs)
    preempted: Optional[str] = None
    last_eval_step = eval_history[-1]["step"] if eval_history else -1  # a relaunch of a finished run: no re-eval
    from pipeline import progress  # pylint: disable=import-outside-toplevel
    watch = None if progress.quiet_from_env() or not is_chief else \
        progress.TrainProgress(stop_at, step, cfg.train_batch_size).start()  # a stderr line every few seconds
    try:
        while step < stop_at:
            batch = global_batch(iterator.next(step))
            params, opt_state, step_arr, sums = p_step(params, opt_state, step_arr, batch)
            loop_sums = sums if loop_sums is None else add_sums(loop_sums, sums)
            step += 1
            loop_steps += 1
            if watch is not None:
                watch.step = step
            if step % cfg.steps_per_loop == 0 or step == stop_at:
                host_sums = jax.tree.map(float, jax.device_get(loop_sums))
                elapsed = time.time() - loop_start
                last = metrics_lib.summarize(host_sums, loop_steps, float(lr_at(step - 1)),
                                             loop_steps * cfg.train_batch_size / max(elapsed, 1e-9),
                                             spec.with_nsp)
                history.append(dict(step=step, **last))
                writer.write_scalars(step, last)
                print(metrics_lib.format_line(step, total, last), flush=True)
                loop_sums, loop_start, loop_steps = None, time.time(), 0
            if evaluator is not None and ((cfg.eval_every_steps and step % cfg.eval_every_steps == 0)
                                          or step == total):
                run_eval(step)
                last_eval_step = step
            stop, time_due = preemption.agree(signals.requested is not None, clock.due())
            if stop:
                preempted = signals.requested or "SIGTERM (another host)"
            if step % ckpt_every == 0 or step == stop_at or time_due or stop:
                save(step)
                clock.saved()
                if is_chief:
                    writer.write_run_logs(cfg, setup, history, step, total, finished=step >= total,
                                          eval_history=eval_history)
            if stop:
                print(f"bertbeam train: {preempted}: saved step {step}; a relaunch with the same flags resumes there",
                      flush=True)
                break
        if evaluator is not None and step == stop_at and last_eval_step != step and preempted is None:
            run_eval(step)  # after the last step of this launch, if not just done
            if is_chief:
                writer.write_run_logs(cfg, setup, history, step, total, finished=step >= total,
                                      eval_history=eval_history)
    finally:  # the progress thread must not outlive the loop (an error, a preemption)
        if watch is not None:
            watch.stop()
    manager.wait_until_finished()
    manager.close()
    writer.close()
    return {"step": step, "metrics": last, "params": params, "origin": origin, "preempted": preempted,
            "eval_metrics": eval_history[-1] if eval_history else None}
