"""Pairing/masking variants end to end on real shared text: SOP, MLM-only, n-gram, dynamic, determinism."""
import random
from pathlib import Path

import numpy as np
import pytest

from pipeline import build
from pipeline.manifest import read_manifest
from transforms import example_codec, keys, masking
from transforms.tfrecord_io import read_records_from_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VOCAB = SHARED / "data" / "vocab" / "bert_base_uncased" / "vocab.txt"
CORPUS = SHARED / "data" / "corpora" / "en_books_dev.txt"
SPM_MODEL = SHARED / "data" / "spm" / "albert_de_30k-clean.model"
SLICE_DOCS = 40

pytestmark = pytest.mark.skipif(not CORPUS.is_file(), reason="../shared is not present")

CLS, SEP, MASK = 101, 102, 103  # bert_base_uncased


@pytest.fixture(scope="module")
def slice_file(tmp_path_factory) -> Path:
    """The first 40 documents of en_books_dev.txt (real text, a few seconds to build)."""
    out, docs = [], 0
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            docs += 1
            if docs == SLICE_DOCS:
                break
        out.append(line)
    path = tmp_path_factory.mktemp("slice") / "en_books_40.txt"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def doc_token_strings(slice_file):
    """Each document's token ids, concatenated over its lines, as ',id,id,...,' (for run searches)."""
    from transforms.wordpiece import WordPieceTokenizer
    tok = WordPieceTokenizer(str(VOCAB), do_lower_case=True)
    return _doc_strings(slice_file, lambda lines: _split_flat(*tok.tokenize_lines(lines)))


def _split_flat(flat, splits):
    flat, splits = flat.tolist(), splits.tolist()
    return [flat[splits[i]:splits[i + 1]] for i in range(len(splits) - 1)]


def _doc_strings(path: Path, encode_lines):
    docs, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip():
            current.append(line)
        elif current:
            docs.append("," + ",".join(str(t) for ids in encode_lines(current) for t in ids) + ",")
            current = []
    return docs


def _run_string(ids) -> str:
    return "," + ",".join(str(int(t)) for t in ids) + ","


def _build(out: Path, corpus: Path, *flags, mode: str = "in_memory", vocab=True):
    argv = [f"--input_file={corpus}", f"--output_dir={out}", "--dupe_factor=2", "--num_shards=2",
            "--max_seq_length=128", "--max_predictions_per_seq=20", *flags]
    if vocab:
        argv.append(f"--vocab_file={VOCAB}")
    argv += ["--direct_running_mode=" + mode] + (["--direct_num_workers=2"] if mode == "multi_processing" else [])
    return build.run(argv)


def _records(out: Path):
    return [example_codec.decode_example(r) for p in sorted(out.glob("train-*"))
            for r in read_records_from_path(str(p))]


def _unmasked(ex):
    ids = ex["input_ids"].copy()
    if "masked_lm_weights" in ex:
        k = int(ex["masked_lm_weights"].sum())
        ids[ex["masked_lm_positions"][:k]] = ex["masked_lm_ids"][:k]
    return ids[:int(ex["input_mask"].sum())]


# A multi_processing run costs ~10-20 s of worker start-up here, so two runs cover every new code path:
# SOP + n-gram + token_boundary (WordPiece, static) and MLM-only + dynamic word_starts (SentencePiece).
VARIANTS = {
    "wordpiece_sop_ngram3_wwm_static": ["--pairing=sop", "--max_ngram_size=3", "--do_whole_word_mask"],
    "spm_none_dynamic_wwm": ["--pairing=none", "--masking=dynamic", "--do_whole_word_mask",
                             f"--spm_model_file={SPM_MODEL}"],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_byte_identical_across_runner_modes(variant, slice_file, tmp_path):
    outs = {}
    flags = VARIANTS[variant]
    for mode in ("in_memory", "multi_processing"):
        _build(tmp_path / mode, slice_file, *flags, mode=mode, vocab=not variant.startswith("spm"))
        outs[mode] = {p.name: p.read_bytes() for p in sorted((tmp_path / mode).glob("train-*"))}
    assert len(outs["in_memory"]) == 2 and all(outs["in_memory"].values())
    assert outs["in_memory"] == outs["multi_processing"]


@pytest.fixture(scope="module")
def sop_build(slice_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("sop")
    manifest = _build(out, slice_file, "--pairing=sop", "--max_ngram_size=3", "--do_whole_word_mask",
                      "--dupe_factor=5")
    return manifest, _records(out), out


def test_sop_records_labels_and_segments(sop_build, doc_token_strings):
    manifest, records, _ = sop_build
    assert manifest["pairing"] == "sop" and "token_boundary" in manifest["features"]
    _check_sop_records(records, manifest["raw_counts"], doc_token_strings, CLS, SEP)


def _check_sop_records(records, counts, doc_token_strings, cls_id, sep_id):
    """Label rate, [CLS] A [SEP] B [SEP] layout, both segments from one document in the labelled order."""
    labels = np.array([int(ex["next_sentence_labels"][0]) for ex in records])
    # Label 1 = swapped pairs + ALBERT's one-sentence chunks paired with another document.
    assert labels.sum() == counts["sop_swapped"] + counts["sop_single_sentence_random"]
    same_doc = len(records) - counts["sop_single_sentence_random"]
    assert abs(counts["sop_swapped"] / same_doc - 0.5) < 4 * (0.25 / same_doc) ** 0.5
    only_other_doc = 0
    for ex, label in zip(records, labels):
        ids = _unmasked(ex)
        seg = ex["segment_ids"][:len(ids)]
        assert ids[0] == cls_id and ids[-1] == sep_id and (ids == sep_id).sum() == 2
        len_a = int((seg == 0).sum())
        assert ids[len_a - 1] == sep_id and (seg[len_a:] == 1).all()
        a, b = _run_string(ids[1:len_a - 1]), _run_string(ids[len_a:-1])
        # Both segments are runs of one document, A before B for label 0 and B before A for label 1.
        ordered = False
        first, second = (a, b) if label == 0 else (b, a)
        for doc in doc_token_strings:
            at = doc.find(first)
            # Runs share their boundary comma; text can repeat, so look for `second` anywhere after.
            if at >= 0 and doc.find(second, at + len(first) - 1) >= 0:
                ordered = True
                break
        if not ordered:
            assert label == 1, "a label-0 pair is not A-then-B from one document"
            assert any(a in doc for doc in doc_token_strings) and any(b in doc for doc in doc_token_strings)
            only_other_doc += 1
        tb = ex["token_boundary"]
        assert tb[0] == 1 and tb[len_a - 1] == 1 and tb[len(ids) - 1] == 1 and not tb[len(ids):].any()
    # Pairs that fit no one-document order are exactly (or, by chance repeats, at most) ALBERT's
    # one-sentence chunks.
    assert 0 < only_other_doc <= counts["sop_single_sentence_random"]


def test_sop_ngram_whole_words_and_budget(sop_build):
    from vocab.vocab_file import load_vocab
    cont = load_vocab(str(VOCAB)).continuation_mask()
    _, records, _ = sop_build
    masked = tokens = 0
    for ex in records:
        ids = _unmasked(ex)
        k = int(ex["masked_lm_weights"].sum())
        pos = set(ex["masked_lm_positions"][:k].tolist())
        assert 1 <= k <= min(20, max(1, round(len(ids) * 0.15)))
        masked += k
        tokens += len(ids)
        for p in range(1, len(ids)):
            if cont[ids[p]] and ids[p - 1] not in (CLS, SEP):
                # A word's pieces are masked together.
                assert (p in pos) == (p - 1 in pos)
    assert abs(masked / tokens - 0.1487) < 0.004


def test_ngram_spans_on_real_text_follow_one_over_n(doc_token_strings):
    """ALBERT n-gram choice on real WordPiece sequences: span lengths (in words) ∝ 1/n."""
    from test_masking import CHI2_999, _chi_square, clean_span_lengths
    from vocab.vocab_file import load_vocab
    cont = load_vocab(str(VOCAB)).continuation_mask()
    stream = [int(t) for doc in doc_token_strings for t in doc.strip(",").split(",")]
    counts, all_counts = np.zeros(3, int), np.zeros(3, int)
    for i, start in enumerate(range(0, len(stream) - 126, 126)):
        ids = [CLS] + stream[start:start + 126] + [SEP]
        maskable = [0 < j < len(ids) - 1 for j in range(len(ids))]
        cands = masking.candidate_words(maskable, cont[ids].tolist(), whole_word=True)
        budget = masking.num_to_predict(len(ids), masking.MaskingConfig())
        for draw in range(3):
            spans = masking.choose_ngram_spans(cands, budget, random.Random(f"{i}/{draw}"), 3)
            for n, _ in spans:
                all_counts[n - 1] += 1
            for n in clean_span_lengths(cands, spans, budget, 3):
                counts[n - 1] += 1
    probs = masking.ngram_probabilities(3, True)
    assert counts.sum() > 6000
    assert _chi_square(counts, probs) < CHI2_999[3], (counts, all_counts)
    # All chosen spans, shortened by the budget and overlaps as in ALBERT, still fall off like 1/n.
    shares = all_counts / all_counts.sum()
    assert shares[0] > shares[1] > shares[2] > 0.1
    print(f"n-gram spans on real text: clean {counts.tolist()} all {all_counts.tolist()}")


def test_none_one_segment_one_sep(slice_file, tmp_path, doc_token_strings):
    manifest = _build(tmp_path, slice_file, "--pairing=none", "--do_whole_word_mask")
    assert "next_sentence_labels" not in manifest["features"]
    records = _records(tmp_path)
    assert len(records) == manifest["counts"]["train"]["num_instances"] > 100
    full = 0
    for ex in records:
        assert "next_sentence_labels" not in ex
        ids = _unmasked(ex)
        assert ids[0] == CLS and ids[-1] == SEP and (ids == SEP).sum() == 1 and (ids == CLS).sum() == 1
        assert not ex["segment_ids"].any()
        # The whole sequence is one run of one document, and MLM may pick any non-special position.
        assert any(_run_string(ids[1:-1]) in doc for doc in doc_token_strings)
        k = int(ex["masked_lm_weights"].sum())
        assert all(0 < p < len(ids) - 1 for p in ex["masked_lm_positions"][:k])
        full += len(ids) == 128
    assert full / len(records) > 0.6


@pytest.mark.parametrize("ngram", [1, 3])
def test_dynamic_masking_matches_static_statistics(slice_file, tmp_path, ngram):
    flags = ["--pairing=nsp" if ngram == 1 else "--pairing=sop", "--do_whole_word_mask",
             f"--max_ngram_size={ngram}", "--dupe_factor=5"]
    static_m = _build(tmp_path / "static", slice_file, *flags)
    dynamic_m = _build(tmp_path / "dynamic", slice_file, *flags, "--masking=dynamic")
    assert dynamic_m["masking"] == "dynamic" and "word_starts" in dynamic_m["features"]
    assert "masked_lm_positions" not in dynamic_m["features"]
    static, dynamic = _records(tmp_path / "static"), _records(tmp_path / "dynamic")
    # Masks draw from their own stream: the unmasked instances are the same, in the same order.
    assert len(static) == len(dynamic)
    for s, d in zip(static, dynamic):
        assert _unmasked(s).tolist() == d["input_ids"][:int(d["input_mask"].sum())].tolist()
        assert (s["segment_ids"] == d["segment_ids"]).all()

    # Mask the dynamic records the way training does (transforms.masking.mask_batch).
    ids = np.stack([d["input_ids"] for d in dynamic])
    mask = np.stack([d["input_mask"] for d in dynamic])
    starts = np.stack([d["word_starts"] for d in dynamic]).astype(bool)
    special = np.isin(ids, [CLS, SEP])
    cfg = masking.MaskingConfig(masked_lm_prob=0.15, max_predictions_per_seq=20, do_whole_word_mask=True,
                                max_ngram_size=ngram)
    seeds = [keys.seed64(7, "dynamic", row) for row in range(len(ids))]
    out, pos, lab, w = masking.mask_batch(ids, mask, special, starts, seeds, cfg, 30522, MASK)
    dyn = _mask_stats(ids, mask, out, pos, lab, w, starts, special)
    sta = _mask_stats(np.stack([_pad(_unmasked(s)) for s in static]), mask,
                      np.stack([s["input_ids"] for s in static]), np.stack([s["masked_lm_positions"] for s in static]),
                      np.stack([s["masked_lm_ids"] for s in static]), np.stack([s["masked_lm_weights"] for s in static]),
                      starts, special)
    total = min(dyn["masked"], sta["masked"])
    assert total > 15000
    assert abs(dyn["masked_per_token"] - sta["masked_per_token"]) < 0.003
    for key, p in (("mask_token_frac", 0.8), ("keep_frac", 0.1), ("random_frac", 0.1)):
        # Two independent samples: 4 standard deviations of their difference.
        assert abs(dyn[key] - sta[key]) < 4 * (2 * p * (1 - p) / total) ** 0.5, (key, dyn, sta)
    assert dyn["partial_words"] == sta["partial_words"] == 0
    assert dyn["special_masked"] == sta["special_masked"] == 0


def _pad(ids, length=128):
    out = np.zeros(length, np.int64)
    out[:len(ids)] = ids
    return out


def _mask_stats(orig, mask, out, pos, lab, w, starts, special):
    """The shared stats tool's masking figures, plus whole-word violations, over a batch."""
    n_mask = n_keep = n_rand = partial = special_masked = 0
    masked = int(w.sum())
    for r in range(len(orig)):
        k = int(w[r].sum())
        p = pos[r, :k]
        assert (lab[r, :k] == orig[r, p]).all()
        n_mask += int((out[r, p] == MASK).sum())
        n_keep += int(((out[r, p] == orig[r, p]) & (orig[r, p] != MASK)).sum())
        n_rand += int(((out[r, p] != MASK) & (out[r, p] != orig[r, p])).sum())
        special_masked += int(special[r, p].sum())
        chosen = np.zeros(orig.shape[1], bool)
        chosen[p] = True
        # A continuation piece (not a word start, not special) is masked exactly when the piece before is.
        L = int(mask[r].sum())
        cont = ~starts[r, 1:L] & ~special[r, 1:L] & ~special[r, :L - 1]
        partial += int((chosen[1:L][cont] != chosen[:L - 1][cont]).sum())
    return {"masked": masked, "masked_per_token": masked / int(mask.sum()), "mask_token_frac": n_mask / masked,
            "keep_frac": n_keep / masked, "random_frac": n_rand / masked, "partial_words": partial,
            "special_masked": special_masked}


ALBERT_SPEC_SEQ = ("input_ids", "input_mask", "segment_ids", "token_boundary")
ALBERT_SPEC_PRED = ("masked_lm_positions", "masked_lm_ids")


def _parse_with_albert_spec(out: Path, seq_len: int = 128, max_pred: int = 20):
    """google-research/albert run_pretraining.py's name_to_features (both its static and
    --masked_lm_budget variants at once), parsed by TensorFlow itself."""
    import tensorflow as tf
    spec = {name: tf.io.FixedLenFeature([seq_len], tf.int64) for name in ALBERT_SPEC_SEQ}
    spec.update({name: tf.io.FixedLenFeature([max_pred], tf.int64) for name in ALBERT_SPEC_PRED})
    spec["masked_lm_weights"] = tf.io.FixedLenFeature([max_pred], tf.float32)
    spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)
    files = sorted(str(p) for p in out.glob("train-*"))
    parsed = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(files)]
    assert parsed
    return parsed


def test_wordpiece_sop_parses_with_albert_spec(sop_build):
    manifest, records, out = sop_build
    parsed = _parse_with_albert_spec(out)
    assert len(parsed) == len(records) == manifest["counts"]["train"]["num_instances"]


@pytest.fixture(scope="module")
def spm_build(slice_file, tmp_path_factory):
    if not SPM_MODEL.is_file():
        pytest.skip("no SentencePiece model in ../shared")
    out = tmp_path_factory.mktemp("spm_sop")
    manifest = _build(out, slice_file, "--pairing=sop", "--max_ngram_size=3", "--do_whole_word_mask",
                      f"--spm_model_file={SPM_MODEL}", vocab=False)
    return manifest, _records(out), out


def test_spm_sop_ids_equal_sentencepiece_and_parse_with_albert_spec(spm_build, slice_file):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(SPM_MODEL))
    manifest, records, out = spm_build
    assert manifest["vocab"]["kind"] == "sentencepiece" and manifest["vocab"]["size"] == sp.get_piece_size()
    cls_id, sep_id, mask_id = (sp.piece_to_id(p) for p in ("[CLS]", "[SEP]", "[MASK]"))
    assert manifest["vocab"]["special_ids"]["[MASK]"] == mask_id
    # Documents encoded by sentencepiece itself: every unmasked segment must be a run of one of them.
    docs = _doc_strings(slice_file, lambda lines: sp.encode(lines))
    _check_sop_records(records, manifest["raw_counts"], docs, cls_id, sep_id)
    parsed = _parse_with_albert_spec(out)
    assert len(parsed) == len(records)
    # Word starts follow ALBERT's _is_start_piece_sp ("▁", "<", punctuation, pieces with characters
    # outside a-z): whole words (and n-grams of them) are masked together.
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    punct = set('!"#$%&\'()*+,-./:;?@[\\]^_`{|}~')
    starts = np.array([p.startswith(("\u2581", "<")) or p in punct or sp.is_control(i) or sp.is_unknown(i)
                       or p in ("[CLS]", "[SEP]", "[MASK]")
                       or any(c.lower() not in set("abcdefghijklmnopqrstuvwxyz") | punct for c in p)
                       for i, p in enumerate(pieces)])
    continuing = 0
    for ex in records:
        ids = _unmasked(ex)
        k = int(ex["masked_lm_weights"].sum())
        pos = set(ex["masked_lm_positions"][:k].tolist())
        tb = ex["token_boundary"][:len(ids)]
        assert (tb == (starts[ids] | (ids == cls_id) | (ids == sep_id))).all()
        for p in range(1, len(ids)):
            if not starts[ids[p]] and ids[p - 1] not in (cls_id, sep_id):
                continuing += 1
                assert (p in pos) == (p - 1 in pos)
    assert continuing > 1000  # the German model splits English words: the check had pieces to look at
