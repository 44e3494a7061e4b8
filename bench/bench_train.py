"""Training throughput (examples/s) and MFU of the Flax pretraining step on synthetic batches.

Runs the real train step (model, loss, LAMB, dropout, data-parallel jit) on every local device and prints,
for each variant, examples/s, step time, model TFLOP/s and MFU, with ratios against the first variant
(the baseline) measured in the same run. FLOPs per sequence are analytic: 3 x forward matmul FLOPs
(encoder + attention scores + gathered MLM head + pooler/NSP), the count the notes use (77.6 GFLOP
for BERT-base with mBERT's vocabulary at seq 128, 19 predictions).

  python bench/bench_train.py --model bert_tiny --batch 32                     # CPU
  python bench/bench_train.py --model bert_base --batch 8 --steps 3            # CPU
  python bench/bench_train.py --model bert_base --batch 256 --dtype bfloat16 \\
      --variants gathered,full_logits,float32                                  # GPU/TPU
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from training import model_configs, models, optimizers, schedules, train  # noqa: E402

# Dense bf16 peak per chip (TFLOP/s) for MFU; fp32 uses the same peak (MFU is against the bf16 roof).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "TPU v3": 123.0, "TPU v4": 275.0, "L4": 121.0}


def flops_per_sequence(cfg: model_configs.ModelConfig, seq: int, preds: int, with_nsp: bool = True) -> float:
    """Training FLOPs per sequence: 3 x forward (2 FLOPs per multiply-add)."""
    h, i, e = cfg.hidden_size, cfg.intermediate_size, cfg.embed_dim
    layer = 2 * seq * (4 * h * h + 2 * h * i) + 2 * 2 * seq * seq * h  # projections + FFN + QK^T and PV
    fwd = cfg.num_hidden_layers * layer
    if cfg.is_albert:
        fwd += 2 * seq * e * h
    fwd += preds * (2 * h * e + 2 * e * cfg.vocab_size)  # transform + tied projection at gathered positions
    if with_nsp:
        fwd += 2 * h * h + 2 * h * 2
    return 3.0 * fwd


def peak_tflops(device) -> float:
    kind = getattr(device, "device_kind", "")
    for name, peak in PEAK_TFLOPS.items():
        if name.lower() in kind.lower():
            return peak
    return 0.0


def synthetic_batch(batch: int, seq: int, preds: int, vocab: int, full_logits: bool) -> dict:
    rng = np.random.default_rng(0)
    p = seq if full_logits else preds
    pos = np.tile(np.arange(seq), (batch, 1)) if full_logits else \
        np.sort(rng.choice(seq, (batch, preds)), axis=1)
    weights = np.zeros((batch, p), np.float32)
    weights[:, :preds] = 1.0
    return {"input_ids": rng.integers(0, vocab, (batch, seq)).astype(np.int32),
            "input_mask": np.ones((batch, seq), np.int32),
            "segment_ids": (np.arange(seq)[None] >= seq // 2).repeat(batch, 0).astype(np.int32),
            "masked_lm_positions": pos.astype(np.int32),
            "masked_lm_ids": rng.integers(0, vocab, (batch, p)).astype(np.int32),
            "masked_lm_weights": weights,
            "next_sentence_labels": rng.integers(0, 2, batch).astype(np.int32)}


def run_variant(cfg, args, dtype: str, full_logits: bool, attention_impl: str) -> dict:
    model = models.build_model(cfg, True, dtype, attention_impl)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    params = jax.device_put(models.init_params(model, jax.random.PRNGKey(0), args.seq, args.preds), rep)
    tx = optimizers.create_optimizer(args.optimizer, schedules.learning_rate_fn(1e-4, 0.0, 100, 10_000))
    opt_state = jax.jit(tx.init, out_shardings=rep)(params)
    step_fn = train.make_train_step(model, tx, args.grad_accum, jax.random.PRNGKey(1))
    p_step = jax.jit(step_fn, in_shardings=(rep, rep, rep, data), out_shardings=(rep, rep, rep, rep),
                     donate_argnums=(0, 1))
    batch = jax.device_put(synthetic_batch(args.batch, args.seq, args.preds, cfg.vocab_size, full_logits), data)
    step = jax.device_put(jnp.int32(0), rep)
    t0 = time.time()
    params, opt_state, step, sums = p_step(params, opt_state, step, batch)
    jax.block_until_ready(sums)
    compile_s = time.time() - t0
    for _ in range(args.warmup):
        params, opt_state, step, sums = p_step(params, opt_state, step, batch)
    jax.block_until_ready(sums)
    t0 = time.time()
    for _ in range(args.steps):
        params, opt_state, step, sums = p_step(params, opt_state, step, batch)
    jax.block_until_ready(sums)
    dt = (time.time() - t0) / args.steps
    eps = args.batch / dt
    flops = flops_per_sequence(cfg, args.seq, args.preds)
    peak = args.peak_tflops or peak_tflops(jax.devices()[0]) * jax.device_count()
    tflops = eps * flops / 1e12
    return {"examples_per_second": eps, "step_ms": dt * 1e3, "compile_s": compile_s, "model_tflops": tflops,
            "mfu": tflops / peak if peak else None, "loss": float(sums["loss"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bert_tiny", help="model class name (bert_tiny, bert_base, ...)")
    ap.add_argument("--vocab_size", type=int, default=0, help="override the class's vocab size")
    ap.add_argument("--batch", type=int, default=32, help="global batch")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--preds", type=int, default=20)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--optimizer", default="lamb", choices=["lamb", "adamw"])
    ap.add_argument("--grad_accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--attention_impl", default="xla", choices=["xla", "cudnn"])
    ap.add_argument("--peak_tflops", type=float, default=0.0, help="override the per-host peak for MFU")
    ap.add_argument("--variants", default="gathered",
                    help="comma list; first is the baseline: gathered (the model as trained), full_logits "
                         "(MLM logits at every position, HF style), float32, bfloat16, cudnn")
    ap.add_argument("--json_out", default="")
    args = ap.parse_args(argv)
    cfg = model_configs.get_model_class(args.model).model
    if args.vocab_size:
        cfg = model_configs.ModelConfig(**{**cfg.__dict__, "vocab_size": args.vocab_size})
    dev = jax.devices()[0]
    print(f"# {args.model}: L={cfg.num_hidden_layers} H={cfg.hidden_size} V={cfg.vocab_size} seq={args.seq} "
          f"preds={args.preds} batch={args.batch} dtype={args.dtype} opt={args.optimizer} on "
          f"{jax.device_count()} x {getattr(dev, 'device_kind', dev.platform)}; "
          f"{flops_per_sequence(cfg, args.seq, args.preds) / 1e9:.1f} GFLOP/sequence")
    results = {}
    for name in args.variants.split(","):
        dtype = {"float32": "float32", "bfloat16": "bfloat16"}.get(name, args.dtype)
        r = run_variant(cfg, args, dtype, name == "full_logits", "cudnn" if name == "cudnn" else args.attention_impl)
        results[name] = r
        base = results[args.variants.split(",")[0]]["examples_per_second"]
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{name:12s} {r['examples_per_second']:10.1f} examples/s  step {r['step_ms']:8.1f} ms  "
              f"{r['model_tflops']:7.2f} TFLOP/s  MFU {mfu}  compile {r['compile_s']:.1f}s  "
              f"x{r['examples_per_second'] / base:.2f} vs {args.variants.split(',')[0]}", flush=True)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
