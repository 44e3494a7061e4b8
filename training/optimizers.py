"""LAMB and AdamW (optax) with BERT's exclusions: LayerNorm and biases get no weight decay and no trust ratio."""
from typing import Any, Callable

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
        optax.scale_by_learning_rate(schedule),
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
        optax.scale_by_learning_rate(schedule),
    )


def create_optimizer(optimizer_type: str, schedule: Callable, weight_decay: float = 0.01
                     ) -> optax.GradientTransformation:
    """--optimizer_type lamb|adamw."""
    if optimizer_type == "lamb":
        return lamb(schedule, weight_decay)
    if optimizer_type == "adamw":
        return adamw(schedule, weight_decay)
    raise ValueError(f"--optimizer_type must be lamb or adamw, got {optimizer_type!r}")
