"""LAMB and AdamW (optax) with BERT's exclusions: LayerNorm and biases get no weight decay and no trust ratio."""
from typing import Any, Callable, NamedTuple

import jax
import optax

EXCLUDED_NAME_PARTS = ("LayerNorm", "layer_norm", "bias")  # as TF Model Garden / ALBERT's LAMB


def _path_names(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def decay_mask(params: Any) -> Any:
    """True for parameters that get weight decay (and LAMB's trust ratio): not LayerNorm, not biases.

    Matches TF's regex test on the variable name (`re.search(r, name)` for r in the excluded list);
    the parameter path here is the TF variable name, so `.../LayerNorm/gamma` and `.../output_bias`
    are excluded exactly as there.
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(part in _path_names(path) for part in EXCLUDED_NAME_PARTS), params)


class GlobalStepScheduleState(NamedTuple):
    """Nothing: the step comes from the caller (the trainer's global step), never from a counter of ours."""


def scale_by_global_step_schedule(schedule: Callable) -> optax.GradientTransformationExtraArgs:
    """Multiplies updates by -schedule(global_step), with global_step passed to `update` by the trainer.

    optax.scale_by_learning_rate(schedule) evaluates the schedule at its own counter, which a fresh optimizer
    state (--expect_partial, a TF init checkpoint) restarts at 0 even when the run continues at global step
    1,000,000: the seed's continued phases would then train at lr(0). Taking the step as an argument makes
    the applied rate the logged one, lr(global step), whatever the optimizer state's history.
    """

    def init_fn(params):
        del params
        return GlobalStepScheduleState()

    def update_fn(updates, state, params=None, *, global_step=None, **extra_args):
        del params, extra_args
        if global_step is None:
            raise ValueError("this optimizer needs update(..., global_step=STEP): the learning rate is "
                             "lr(global step), not a count of updates")
        lr = schedule(global_step)
        return jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lamb(schedule: Callable, weight_decay: float = 0.01, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-6) -> optax.GradientTransformation:
    """tfa.optimizers.LAMB as the seed runs used it.

    optax.lamb applies the trust ratio to every parameter; TF's LAMB excludes LayerNorm and biases from
    both weight decay and layer adaptation, so compose it: bias-corrected Adam direction, masked decoupled
    weight decay, masked trust ratio ||w|| / ||update||, then -lr.
    """
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.masked(optax.add_decayed_weights(weight_decay), decay_mask),
        optax.masked(optax.scale_by_trust_ratio(), decay_mask),
        scale_by_global_step_schedule(schedule),
    )


def adamw(schedule: Callable, weight_decay: float = 0.01, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-6, clip_norm: float = 1.0) -> optax.GradientTransformation:
    """Model Garden's AdamWeightDecay (Keras Adam with bias correction) with global-norm clipping at 1.0
    and decoupled weight decay (lr * wd * w) skipping LayerNorm and biases.

    google-research/bert's own AdamW differs only in having no bias correction.
    """
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.masked(optax.add_decayed_weights(weight_decay), decay_mask),
        scale_by_global_step_schedule(schedule),
    )


def create_optimizer(optimizer_type: str, schedule: Callable, weight_decay: float = 0.01
                     ) -> optax.GradientTransformation:
    """--optimizer_type lamb|adamw. Call `update(grads, state, params, global_step=STEP)`: the learning rate
    is schedule(STEP), the trainer's global step (see scale_by_global_step_schedule)."""
    if optimizer_type == "lamb":
        return lamb(schedule, weight_decay)
    if optimizer_type == "adamw":
        return adamw(schedule, weight_decay)
    raise ValueError(f"--optimizer_type must be lamb or adamw, got {optimizer_type!r}")
