"""Benchmark of `bertbeam build`: instances/s, instances per CPU-second, input MB/s and peak RSS.

Baseline, measured in the same run: a reference-style single process built like google-research/bert's
`create_pretraining_data.py` (all documents in memory, the pure-Python BERT tokenizer of
tests/reference_tokenization.py, one `tf.train.Example` built per instance, `tf.io.TFRecordWriter`), using
our instance/masking functions with one global RNG. Memory: the same build on the corpus repeated 1x and
--scale times (8 by default); bounded memory means the peak does not grow with the corpus.

    ./run_local.sh bench bench/bench_build.py [--input_file F] [--vocab_file V] [--scale 8] [--skip_baseline]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _measure(cmd, env=None):
    """Runs cmd in a fresh process; returns (wall s, cpu s of the process tree, peak RSS MiB, stdout)."""
    wrapper = ("import resource,subprocess,sys,time,json;t=time.time();"
               "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
               "r=resource.getrusage(resource.RUSAGE_CHILDREN);"
               "print(json.dumps({'rc':p.returncode,'wall':time.time()-t,'cpu':r.ru_utime+r.ru_stime,"
               "'rss_mb':r.ru_maxrss/1024,'out':p.stdout[-4000:],'err':p.stderr[-4000:]}))")
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{cmd[:4]} failed:\n{result['err']}")
    return result


BASELINE = r'''
import collections, random, sys, time
import tensorflow as tf
sys.path.insert(0, sys.argv[1])
from tests.reference_tokenization import ReferenceTokenizer, load_tokens
from transforms import masking
from transforms.instances import InstanceConfig, DocumentStats, create_instances
inp, vocab_file, out, dupe, seq, pred = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
tok = ReferenceTokenizer(load_tokens(vocab_file), do_lower_case=True)
ids = tok.vocab
docs = [[]]
for line in open(inp, encoding="utf-8", errors="replace"):
    line = line.strip()
    if not line:
        docs.append([])
    else:
        t = tok.tokenize(line)
        if t:
            docs[-1].append([ids[x] for x in t])
docs = [d for d in docs if d]
rng = random.Random(12345)
rng.shuffle(docs)
cfg = InstanceConfig(seq, 0.1, "nsp")
mcfg = masking.MaskingConfig(0.15, pred, True)
inv = list(ids)
cont = [t.startswith("##") for t in inv]
cls, sep, msk = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
instances = []
stats = DocumentStats()
for _ in range(dupe):
    for di in range(len(docs)):
        def pick(r, _d=di):
            o = r.randint(0, len(docs) - 2)
            return docs[o + 1 if o >= _d else o]
        for pair in create_instances(docs[di], pick, cfg, rng, stats):
            tokens = [cls] + pair.tokens_a + [sep] + pair.tokens_b + [sep]
            la = len(pair.tokens_a) + 2
            mk = [True] * len(tokens); mk[0] = mk[la - 1] = mk[-1] = False
            m = masking.mask_instance(tokens, mk, [cont[t] for t in tokens], rng, mcfg, len(inv), msk)
            instances.append((m, la, pair.is_random_next))
rng.shuffle(instances)
w = tf.io.TFRecordWriter(out)
def feat(v): return tf.train.Feature(int64_list=tf.train.Int64List(value=v))
for m, la, rn in instances:
    n = len(m.input_ids); padn = seq - n; k = len(m.positions)
    f = collections.OrderedDict()
    f["input_ids"] = feat(m.input_ids + [0] * padn)
    f["input_mask"] = feat([1] * n + [0] * padn)
    f["segment_ids"] = feat([0] * la + [1] * (n - la) + [0] * padn)
    f["masked_lm_positions"] = feat(m.positions + [0] * (pred - k))
    f["masked_lm_ids"] = feat(m.labels + [0] * (pred - k))
    f["masked_lm_weights"] = tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * k + [0.0] * (pred - k)))
    f["next_sentence_labels"] = feat([1 if rn else 0])
    w.write(tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString())
w.close()
print(len(instances))
'''


def _repeat_corpus(src: Path, times: int, dst: Path) -> None:
    data = src.read_bytes().rstrip(b"\n") + b"\n\n"
    with open(dst, "wb") as f:
        for _ in range(times):
            f.write(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", default=str(SHARED / "data/corpora/en_books_dev.txt"))
    p.add_argument("--vocab_file", default=str(SHARED / "data/vocab/bert_base_uncased/vocab.txt"))
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--max_predictions_per_seq", type=int, default=20)
    p.add_argument("--dupe_factor", type=int, default=5)
    p.add_argument("--scale", type=int, default=8, help="Corpus repetition for the memory check.")
    p.add_argument("--baseline_scale", type=int, default=3, help="Corpus repetition for the baseline's second run.")
    p.add_argument("--skip_baseline", action="store_true")
    p.add_argument("--extra", default="", help="Extra build flags, space-separated.")
    args = p.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    src = Path(args.input_file)
    mb = src.stat().st_size / 1e6
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def build(corpus: Path, name: str, times: int):
            cmd = [sys.executable, "-m", "pipeline.build", f"--input_file={corpus}", f"--vocab_file={args.vocab_file}",
                   f"--output_dir={tmp / name}", f"--max_seq_length={args.max_seq_length}",
                   f"--max_predictions_per_seq={args.max_predictions_per_seq}", f"--dupe_factor={args.dupe_factor}",
                   "--do_whole_word_mask", "--do_lower_case=True", *args.extra.split()]
            r = _measure(cmd, env)
            manifest = json.loads((tmp / name / "manifest.json").read_text())
            n = manifest["counts"]["train"]["num_instances"]
            rows.append((name, n, r["wall"], r["cpu"], r["rss_mb"], mb * times))
            return n

        big = tmp / f"corpus_x{args.scale}.txt"
        _repeat_corpus(src, args.scale, big)
        base_big = tmp / f"corpus_x{args.baseline_scale}.txt"
        _repeat_corpus(src, args.baseline_scale, base_big)
        if not args.skip_baseline:
            for corpus, times in ((src, 1), (base_big, args.baseline_scale)):
                r = _measure([sys.executable, "-c", BASELINE, str(REPO), str(corpus), args.vocab_file,
                              str(tmp / "baseline.tfrecord"), str(args.dupe_factor), str(args.max_seq_length),
                              str(args.max_predictions_per_seq)], env)
                n = int(r["out"].strip().splitlines()[-1])
                rows.append((f"baseline x{times}", n, r["wall"], r["cpu"], r["rss_mb"], mb * times))
        build(src, "bertbeam x1", 1)
        build(big, f"bertbeam x{args.scale}", args.scale)

    print(f"corpus {src.name} ({mb:.2f} MB), seq {args.max_seq_length}, dupe {args.dupe_factor}, "
          f"{os.cpu_count()} cores")
    print(f"{'run':<40} {'instances':>9} {'wall s':>7} {'cpu s':>7} {'inst/s':>8} {'inst/cpu-s':>10} "
          f"{'MB/s':>6} {'peak RSS MiB':>12}")
    for name, n, wall, cpu, rss, size in rows:
        print(f"{name:<40} {n:>9} {wall:>7.1f} {cpu:>7.1f} {n / wall:>8.0f} {n / cpu:>10.0f} "
              f"{size / wall:>6.2f} {rss:>12.0f}")
    by_name = {r[0]: r for r in rows}

    def marginal(small, large):
        # Instances per CPU-second of the extra corpus: start-up (imports, tokenizer build) cancels out.
        return (large[1] - small[1]) / max(1e-9, large[3] - small[3])

    ours1, ours_big = by_name["bertbeam x1"], by_name[f"bertbeam x{args.scale}"]
    ours_rate = marginal(ours1, ours_big)
    print(f"\nbertbeam steady rate: {ours_rate:,.0f} instances per CPU-second "
          f"({1e6 / ours_rate:.0f} us per instance)")
    print(f"bertbeam peak RSS x{args.scale} corpus / x1 corpus: {ours_big[4] / ours1[4]:.2f} (1.0 = flat)")
    if not args.skip_baseline:
        base1, base_big = by_name["baseline x1"], by_name[f"baseline x{args.baseline_scale}"]
        base_rate = marginal(base1, base_big)
        print(f"baseline steady rate: {base_rate:,.0f} instances per CPU-second")
        print(f"speed-up, instances per CPU-second (steady): {ours_rate / base_rate:.1f}x; "
              f"whole runs at x1: {(ours1[1] / ours1[3]) / (base1[1] / base1[3]):.1f}x")
        print(f"baseline peak RSS x{args.baseline_scale} / x1: {base_big[4] / base1[4]:.2f} (holds every document)")
    print("note: bertbeam's times include Beam start-up and the TensorFlow import (~5-8 s), which dominate "
          "small corpora; the xN row shows the steady rate.")


if __name__ == "__main__":
    main()
