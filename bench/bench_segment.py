"""Sentence segmentation benchmark: UD dev F1 (via seg_eval.py) and MB/s per core, bertbeam vs pysbd/Punkt/naive.

Usage:
  .venv/bin/python bench/bench_segment.py            # full table (F1 per UD dev set + speed, ratios vs pysbd)
  .venv/bin/python bench/bench_segment.py --serve NAME --lang L   # act as a seg_eval.py command
  .venv/bin/python bench/bench_segment.py --tibetan   # --lang bo: MB/s and segment lengths on the Kangyur volume
Segmenters: bertbeam (transforms.segment), pysbd (closest language it has: 'da' for Norwegian, 'en'),
punkt (NLTK PunktTrainer trained here: Norwegian on UD no_bokmaal raw_texts_2016/train.txt, English on
the Gutenberg books alice + pride_and_prejudice + botchan from ../shared/data/text), naive (split after
[.!?]+ and whitespace).
"""
import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
UD = SHARED / "data" / "ud"
TEXT = SHARED / "data" / "text"
CACHE = Path(os.environ.get("BERTBEAM_BENCH_CACHE", "/tmp/bertbeam_bench_segment"))
sys.path.insert(0, str(REPO))

SETS = [  # (label, conllu, lang)
    ("Bokmål", UD / "no_bokmaal" / "no_bokmaal-ud-dev.conllu", "nb"),
    ("Nynorsk", UD / "no_nynorsk" / "no_nynorsk-ud-dev.conllu", "nn"),
    ("English", UD / "en_ewt" / "en_ewt-ud-dev.conllu", "en"),
]
# Not UD and not used for the rules (only its sentence-initial words fed the opener list): Talk of
# Norway Bokmål sentences, one a line, grouped 5 at a time into paragraphs.
TON = TEXT / "talk_of_norway" / "sentences_10k_nob.txt"
SEGMENTERS = ["bertbeam", "pysbd", "punkt", "naive"]
PYSBD_LANG = {"nb": "da", "nn": "da", "en": "en"}


def _punkt_train_text(lang: str) -> str:
    if lang == "en":
        parts = [TEXT / "alice_11-0.txt", TEXT / "pride_and_prejudice_1342-0.txt", TEXT / "botchan.txt"]
    else:
        parts = [UD / "no_bokmaal" / "raw_texts_2016" / "train.txt"]
    return "\n\n".join(p.read_text(encoding="utf-8") for p in parts)


def _punkt(lang: str):
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTrainer

    fam = "en" if lang == "en" else "no"
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"punkt_{fam}.pickle"
    if path.exists():
        params = pickle.loads(path.read_bytes())
    else:
        trainer = PunktTrainer()
        trainer.INCLUDE_ALL_COLLOCS = True
        trainer.train(_punkt_train_text(fam), finalize=False)
        trainer.finalize_training()
        params = trainer.get_params()
        path.write_bytes(pickle.dumps(params))
    return PunktSentenceTokenizer(params).tokenize


_NAIVE = re.compile(r"(?<=[.!?])\s+")


def make(name: str, lang: str) -> Callable[[str], List[str]]:
    """A function paragraph -> sentences for segmenter `name`."""
    if name == "bertbeam":
        from transforms.segment import Segmenter

        return Segmenter(lang).split
    if name == "pysbd":
        import pysbd

        seg = pysbd.Segmenter(language=PYSBD_LANG.get(lang, "en"), clean=False)
        return lambda p: [s.strip() for s in seg.segment(p) if s.strip()]
    if name == "punkt":
        return _punkt(lang)
    if name == "naive":
        return lambda p: [s for s in _NAIVE.split(p.strip()) if s]
    raise ValueError(name)


def serve(name: str, lang: str) -> None:
    split = make(name, lang)
    out = sys.stdout
    for line in sys.stdin:
        sents = split(line.rstrip("\n"))
        out.write("".join(s + "\n" for s in sents) + "\n")


def ton_conllu(n_sentences: int = 5000, per_paragraph: int = 5) -> Path:
    """Writes Talk of Norway sentences as a minimal CoNLL-U ('# newpar' / '# text =') for seg_eval.py."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / "talk_of_norway_nob.conllu"
    lines = [ln.strip() for ln in TON.read_text(encoding="utf-8").splitlines() if ln.strip()][:n_sentences]
    with out.open("w", encoding="utf-8") as f:
        for i, sent in enumerate(lines):
            if i % per_paragraph == 0:
                f.write("# newpar\n")
            f.write(f"# text = {sent}\n\n")
    return out


def f1(name: str, conllu: Path, lang: str) -> Dict[str, float]:
    cmd = [sys.executable, str(SHARED / "tools" / "seg_eval.py"), str(conllu), "--",
           sys.executable, str(Path(__file__).resolve()), "--serve", name, "--lang", lang]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"seg_eval failed for {name}: {res.stdout} {res.stderr[-2000:]}")
    return json.loads(res.stdout)


def speed_paragraphs(lang: str, limit_bytes: int) -> List[str]:
    """Running text for the speed test: UD Bokmål *train* raw text, or Pride and Prejudice reflowed."""
    if lang == "en":
        raw = (TEXT / "pride_and_prejudice_1342-0.txt").read_text(encoding="utf-8")
        paras = [" ".join(b.split()) for b in re.split(r"\n\s*\n", raw)]
    else:
        raw = (UD / "no_bokmaal" / "raw_texts_2016" / "train.txt").read_text(encoding="utf-8")
        paras = [ln.strip() for ln in raw.splitlines()]
    out, total = [], 0
    for p in paras:
        if p:
            out.append(p)
            total += len(p.encode("utf-8")) + 1
            if total >= limit_bytes:
                break
    return out


def mb_per_s(split: Callable[[str], List[str]], paras: List[str], min_time: float) -> float:
    nbytes = sum(len(p.encode("utf-8")) + 1 for p in paras)
    reps, elapsed = 0, 0.0
    t0 = time.process_time()  # CPU time of this (single-threaded) process = per core
    while elapsed < min_time or reps == 0:
        for p in paras:
            split(p)
        reps += 1
        elapsed = time.process_time() - t0
    return nbytes * reps / elapsed / 1e6


TIBETAN = TEXT / "tibetan" / "kangyur_vol033_d12.jsonl"
_SYLLABLE = re.compile("[\u0f40-\u0fbc]+")  # letters, subjoined letters and vowel signs between marks


def tibetan(min_time: float) -> int:
    """--lang bo on Derge Kangyur vol. 33: MB/s per core and the segment length distribution in syllables."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from transforms.segment import Segmenter, TibetanRules

    if not TIBETAN.exists():
        print(f"shared data not found at {TIBETAN}", file=sys.stderr)
        return 1
    with TIBETAN.open(encoding="utf-8") as f:
        works = [json.loads(line)["text"] for line in f if line.strip()]
    nbytes = sum(len(w.encode("utf-8")) for w in works)
    split = Segmenter("bo").split
    print(f"{TIBETAN.name}: {len(works)} works, {nbytes / 1e6:.2f} MB")
    print(f"bertbeam --lang bo: {mb_per_s(split, works, min_time):.1f} MB/s per core (process CPU time)")
    # Without the length cap: the shad-delimited sentences themselves (what the cap is chosen from).
    uncapped = Segmenter("bo")
    uncapped._bo = TibetanRules(max_syllables=10 ** 9)  # pylint: disable=protected-access
    for label, seg in (("shad-delimited (no cap)", uncapped.split), ("with the cap", split)):
        syl = np.array([len(_SYLLABLE.findall(s)) for w in works for s in seg(w)])
        pct = np.percentile(syl, [50, 90, 99, 99.9, 100])
        print(f"{label}: {len(syl)} segments; syllables p50 {pct[0]:.0f} p90 {pct[1]:.0f} p99 {pct[2]:.0f} "
              f"p99.9 {pct[3]:.0f} max {pct[4]:.0f}; > 100: {(syl > 100).sum()} ({(syl > 100).mean():.2%})")
    return 0


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", choices=SEGMENTERS)
    ap.add_argument("--lang", default="nb")
    ap.add_argument("--speed_bytes", type=int, default=200_000, help="text size per speed test")
    ap.add_argument("--min_time", type=float, default=1.0, help="CPU seconds per speed test (at least)")
    ap.add_argument("--tibetan", action="store_true", help="only the Tibetan (--lang bo) speed and lengths")
    args = ap.parse_args(argv)
    if args.tibetan:
        return tibetan(args.min_time)
    if args.serve:
        serve(args.serve, args.lang)
        return 0
    if not UD.exists():
        print(f"shared data not found at {UD}", file=sys.stderr)
        return 1
    sets = list(SETS)
    if TON.exists():
        sets.append(("ToN Bokmål*", ton_conllu(), "nb"))
    f1s: Dict[str, Dict[str, float]] = {n: {} for n in SEGMENTERS}
    for label, path, lang in sets:
        for n in SEGMENTERS:
            r = f1(n, path, lang)
            f1s[n][label] = r
    speeds: Dict[str, Dict[str, float]] = {n: {} for n in SEGMENTERS}
    for lang, label in (("nb", "no"), ("en", "en")):
        paras = speed_paragraphs(lang, args.speed_bytes)
        for n in SEGMENTERS:
            split = make(n, lang)
            split(paras[0])  # warm up (lazy loads, regex compilation)
            speeds[n][label] = mb_per_s(split, paras, args.min_time)
    print(f"UD dev sentence-boundary F1 (P/R) via shared/tools/seg_eval.py; speed = MB/s per core "
          f"(process CPU time, {args.speed_bytes // 1000} kB of running text; no = UD Bokmål train raw text, "
          f"en = Pride and Prejudice)")
    hdr = "| segmenter | " + " | ".join(f"{lab} F1 (P/R)" for lab, _, _ in sets) + \
        " | MB/s no | MB/s en | × pysbd no | × pysbd en |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for n in SEGMENTERS:
        cells = [f"{f1s[n][lab]['f1']:.4f} ({f1s[n][lab]['precision']:.3f}/{f1s[n][lab]['recall']:.3f})"
                 for lab, _, _ in sets]
        sp = speeds[n]
        name = {"pysbd": "pysbd (da / en)", "punkt": "NLTK Punkt (trained offline)"}.get(n, n)
        print(f"| {name} | " + " | ".join(cells) + f" | {sp['no']:.2f} | {sp['en']:.2f} | "
              f"{sp['no'] / speeds['pysbd']['no']:.1f} | {sp['en'] / speeds['pysbd']['en']:.1f} |")
    best = {lab: max(f1s[n][lab]["f1"] for n in SEGMENTERS if n != "bertbeam") for lab, _, _ in sets}
    print("bertbeam minus best other F1: " + ", ".join(
        f"{lab} {f1s['bertbeam'][lab]['f1'] - best[lab]:+.4f}" for lab, _, _ in sets))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
