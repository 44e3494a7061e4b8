"""Learning-rate schedules reproducing TF Model Garden's BERT pretraining (warm-up + PolynomialDecay)."""
from typing import Callable, Union

import jax.numpy as jnp

Step = Union[int, "jnp.ndarray"]


def learning_rate_fn(learning_rate: float, end_lr: float, warmup_steps: int,
                     total_steps: int) -> Callable[[Step], "jnp.ndarray"]:
    """lr(global_step) as the seed runs had it.

    Steps < warmup_steps: learning_rate * step / warmup_steps (linear warm-up from 0).
    Afterwards: Keras PolynomialDecay(learning_rate -> end_lr, decay_steps=total_steps, power=1) evaluated
    at the *global* step, i.e. counted from step 0, not restarted after the warm-up (unlike
    optax.join_schedules). The global step continues from a restored checkpoint, so a phase that restarts
    at step 1,000,000 of 1,200,000 with lr 24e-4 -> 0 starts at 4e-4. end_lr == learning_rate is constant.
    """
    lr = float(learning_rate)
    end = float(end_lr)
    decay_steps = max(int(total_steps), 1)
    warmup = int(warmup_steps)

    def schedule(step: Step) -> "jnp.ndarray":
        step_f = jnp.asarray(step, jnp.float32)
        frac = jnp.minimum(step_f, decay_steps) / decay_steps
        decayed = (lr - end) * (1.0 - frac) + end
        if warmup <= 0:
            return decayed
        warm = lr * step_f / warmup
        return jnp.where(step_f < warmup, warm, decayed)

    return schedule
