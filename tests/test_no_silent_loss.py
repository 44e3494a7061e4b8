"""No silent token loss: MLM-only keeps every token, long raw-text sentences are split, losses are counted,
and bert-format NSP/SOP output stays byte-identical to the reference-semantics code it replaced."""
import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from transforms.bucket_builder import BuildConfig, VocabInfo, build_tokenized_bucket
from transforms.corpus_reader import RawDocument
from transforms.instances import (DocumentStats, InstanceConfig, TokenBreaks, create_instances,
                                  split_long_sentence)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _synthetic_bucket(seed=7, n_docs=40):
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        sents = []
        for _ in range(rng.choice([1, 2, 3, 6, 12, 25])):
            n = rng.choice([1, 3, 8, 20, 35, 60, 140, 400]) if rng.random() < 0.3 else rng.randint(1, 40)
            sents.append([rng.randint(110, 999) for _ in range(n)])
        docs.append((RawDocument(key=f"doc{d:03d}", lines=["x"] * len(sents), source=f"f:{d}"), sents))
    return docs


def _vocab():
    cont = np.zeros(1000, bool)
    cont[500:700] = True
    return VocabInfo(1000, 101, 102, 103, 100, cont)


def _digest(result):
    h = hashlib.sha256()
    for s, k, rec in zip(result.shard_ids.tolist(), result.keys.tolist(), result.records):
        h.update(f"{s}:{k}:".encode())
        h.update(rec)
    return h.hexdigest()


# sha256 of the records (with shard and key) that the code before this change wrote for these buckets:
# bert-format NSP/SOP keep the reference's semantics byte for byte (sentences over the room included).
PINNED = {
    ("nsp", "random_document", 32): ("c6dfcdaa0a65f436f8a3769948c47fa40df6f92a9ef4206853242c8d4cbbecc6", 907),
    ("nsp", "random_document", 128): ("a266b2973fe353021e54e82dc7445a7babbf4d352595bc118a879fba3761a8ca", 448),
    ("sop", "random_document", 32): ("28bae09ab496ddbd77d22e638c9967f4c2707cb79aec57582701e58e4da297fe", 726),
    ("sop", "random_document", 128): ("c00e26218d1fc9633977e95fe115950597a4d5f1f799d337ce32a216d5b97ae4", 326),
    ("sop", "split", 32): ("f3dd440107e0434e9d9135ddc06273794ee78c49b416b0d4db7d289bf3edcf7a", 725),
    ("sop", "split", 128): ("dac4d437c31728c15ab49194c5e85675da6fbc94a8bd000fffc9655f29b618d4", 325),
    ("sop", "drop", 32): ("a2fc9eac0957150a018c87e92e8e7ba68e3afb47d4ff24fd48a6f5063f0469b2", 376),
    ("sop", "drop", 128): ("d619814f6fe1d6878d3829fdfde5e3fd62ad5bdb9b9a82db055dbc67e69935ae", 257),
}


@pytest.mark.parametrize("pairing,single,seq", sorted(PINNED))
def test_bert_format_pairs_are_byte_identical_to_before(pairing, single, seq):
    cfg = BuildConfig(max_seq_length=seq, max_predictions_per_seq=seq // 6, dupe_factor=3, pairing=pairing,
                      num_shards=3, do_whole_word_mask=True, max_ngram_size=3, sop_single_sentence=single)
    result = build_tokenized_bucket(_synthetic_bucket(), cfg, _vocab())
    assert (_digest(result), len(result.records)) == PINNED[(pairing, single, seq)]
    c = result.counts
    # Every token copy is accounted for: in an instance, or lost for a named reason.
    lost = sum(v for k, v in c.items() if k.startswith("token_copies_lost."))
    assert c["token_copies_offered"] == c["token_copies_in_instances"] + lost
    assert c.get("token_copies_lost.over_long_sentence", 0) > 0  # the 140/400-token sentences


def test_pipeline_bert_format_pairs_unchanged(tmp_path):
    """The same pin through `bertbeam build` on real text (shards' sha256 recorded before the change)."""
    corpus_src = SHARED / "data" / "corpora" / "en_books_dev.txt"
    vocab = SHARED / "data" / "vocab" / "bert_base_uncased" / "vocab.txt"
    if not corpus_src.exists():
        pytest.skip("../shared is not present")
    from pipeline import build
    (tmp_path / "in").mkdir()
    corpus = tmp_path / "in" / "books.txt"
    corpus.write_text("\n".join(corpus_src.read_text(encoding="utf-8").splitlines()[:3000]) + "\n", encoding="utf-8")
    expected = {"nsp": ("981a0dd07804a8de7aa6f1ac707cfa61c3f02027e830dc2a4091e480f30d8a64", 2586),
                "sop": ("96dc7d7026c91f775146ee05d118d5d9091a0af17877090129091a1c080a2af1", 1931)}
    for pairing, (sha, n) in expected.items():
        out = tmp_path / pairing
        m = build.run([f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", "--dupe_factor=2",
                       "--max_seq_length=64", "--max_predictions_per_seq=10", "--num_shards=2",
                       f"--pairing={pairing}", "--do_whole_word_mask", "--max_ngram_size=3"])
        h = hashlib.sha256()
        for p in sorted(out.glob("train-*")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
        assert (h.hexdigest(), m["counts"]["train"]["num_instances"]) == (sha, n), pairing
        assert m["reconciliation"]["ok"], m["reconciliation"]


def _own_positions(instances):
    return [t for inst in instances for t in inst.tokens_a]


def test_fifty_thousand_token_sentence_mlm_only_loses_nothing():
    sentence = list(range(1000, 51000))  # one "sentence" of 50,000 tokens
    doc = [[1, 2, 3], sentence, [4, 5]]
    for short_seq_prob in (0.0, 0.5):
        for seed in range(3):
            stats = DocumentStats()
            insts = create_instances(doc, None, InstanceConfig(128, short_seq_prob, "none"), random.Random(seed), stats)
            assert _own_positions(insts) == [t for s in doc for t in s]  # every token once, in order
            assert all(1 <= len(i.tokens_a) <= 126 and not i.tokens_b for i in insts)
            assert stats.own_tokens_in_instances == 50_005 and not stats.lost() and stats.truncated_tokens == 0
            assert stats.chunk_cuts >= 50_000 // 126


@pytest.mark.parametrize("pairing", ["nsp", "sop"])
def test_fifty_thousand_token_sentence_pairs_are_split_and_counted(pairing):
    tokens = [f"w{i}" for i in range(1000)] + [",", "\u0f0d", "ka\u0f0b"]
    comma, shad, tsheg = 1000, 1001, 1002
    breaks = TokenBreaks.from_tokens(tokens, np.zeros(len(tokens), bool))
    rng = random.Random(0)
    sentence = [rng.choice([comma, shad, tsheg] + list(range(200))) if rng.random() < 0.2 else rng.randrange(200)
                for _ in range(50_000)]
    docs = [(RawDocument(key=f"d{k}", lines=["x"], source="s"), [list(sentence)]) for k in range(2)]
    cfg = BuildConfig(max_seq_length=128, max_predictions_per_seq=20, dupe_factor=2, pairing=pairing,
                      split_long_sentences=True)
    vocab = VocabInfo(len(tokens), 990, 991, 992, 993, np.zeros(len(tokens), bool), breaks)
    c = build_tokenized_bucket(docs, cfg, vocab).counts
    assert c["sentences_split"] == 2 and c["sentence_pieces_added"] > 2 * 50_000 // 31
    lost = {k: v for k, v in c.items() if k.startswith("token_copies_lost.")}
    assert c["token_copies_offered"] == 2 * 2 * 50_000 == c["token_copies_in_instances"] + sum(lost.values())
    assert set(lost) <= {"token_copies_lost.chunk_end_truncation"}  # no over-long sentence is left to trim
    assert c["token_copies_in_instances"] / c["token_copies_offered"] > 0.85
    # Unsplit (bert format), the reference trims the same sentence to one chunk: almost all of it lost.
    cfg_ref = BuildConfig(max_seq_length=128, max_predictions_per_seq=20, dupe_factor=2, pairing=pairing)
    c_ref = build_tokenized_bucket(docs, cfg_ref, vocab).counts
    assert c_ref["token_copies_in_instances"] / c_ref["token_copies_offered"] < 0.01
    assert c_ref["token_copies_lost.over_long_sentence"] > 0.99 * c_ref["token_copies_offered"]


def test_split_prefers_clause_punctuation_then_tsheg_then_word_start():
    tokens = ["a", "##b", "c", ",", "\u0f40\u0f0b", "\u0f40", "\u0f0d", "d"]
    cont = np.array([t.startswith("##") for t in tokens])
    breaks = TokenBreaks.from_tokens(tokens, cont)
    A, B, C, COMMA, TSHEG, OPEN, SHAD = range(7)
    # A comma in the second half of the window wins over later word starts.
    pieces = split_long_sentence([A, A, A, COMMA, A, A, A, A, A, A], 6, breaks)
    assert pieces[0] == [A, A, A, COMMA]
    # A shad is clause punctuation too; a tsheg beats a plain word start; nothing is lost.
    pieces = split_long_sentence([OPEN, OPEN, OPEN, TSHEG, OPEN, OPEN, OPEN, OPEN], 6, breaks)
    assert pieces[0] == [OPEN, OPEN, OPEN, TSHEG]
    assert split_long_sentence([OPEN, SHAD, OPEN, OPEN, OPEN, SHAD, OPEN], 6, breaks)[0] == [OPEN, SHAD, OPEN, OPEN,
                                                                                           OPEN, SHAD]
    # A "##" piece is never where a cut lands when a word start is in reach.
    pieces = split_long_sentence([A, B, A, B, A, B, A, B, A, B], 6, breaks)
    assert all(p[0] != B for p in pieces)
    # No boundary at all: fixed windows of the limit.
    pieces = split_long_sentence([OPEN] * 20, 6, breaks)
    assert [len(p) for p in pieces] == [6, 6, 6, 2] and sum(pieces, []) == [OPEN] * 20


def test_token_balance_holds_for_every_pairing_on_random_documents():
    rng = random.Random(5)
    docs = [[[rng.randrange(110, 999) for _ in range(rng.choice([1, 5, 30, 90, 300]))]
             for _ in range(rng.randint(1, 9))] for _ in range(60)]
    for pairing in ("nsp", "sop", "none"):
        for d, doc in enumerate(docs):
            stats = DocumentStats()
            pick = (lambda r, _d=d: docs[(_d + 1 + r.randrange(len(docs) - 1)) % len(docs)])
            create_instances(doc, pick, InstanceConfig(64, 0.2, pairing), random.Random(d), stats)
            assert stats.own_tokens_in_instances + sum(stats.lost().values()) == sum(map(len, doc)), (pairing, d)
            if pairing == "none":
                assert not stats.lost()


def _build(tmp_path, name, *flags):
    from pipeline import build
    out = tmp_path / name
    m = build.run([f"--output_dir={out}", "--num_shards=1", "--dupe_factor=2", *flags])
    return m, out


def test_long_sentence_jsonl_no_longer_loses_text_silently(tmp_path, demo_vocab):
    """A jsonl document that is one 'sentence' of about 20,000 words (no sentence punctuation)."""
    rng = random.Random(1)
    words = [w for w in re.findall(r"[a-z]+", demo_vocab.read_text()) if len(w) > 2][:2000]
    text = " ".join(rng.choice(words) + ("," if rng.random() < 0.05 else "") for _ in range(20_000))
    corpus = tmp_path / "long.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": text}) + "\n" + json.dumps({"id": "b", "text": text[:5000]})
                      + "\n", encoding="utf-8")
    common = [f"--input_file={corpus}", f"--vocab_file={demo_vocab}", "--input_format=jsonl",
              "--max_predictions_per_seq=20"]
    m, _ = _build(tmp_path, "none", *common, "--pairing=none")
    tok = m["tokens"]
    assert tok["read"] > 20_000 and tok["used"] == tok["read"] and tok["reached_instance_share"] == 1.0
    assert m["reconciliation"]["ok"] and m["pairing_stats"]["mlm_chunks_cut"] > 0
    for pairing in ("nsp", "sop"):
        m, _ = _build(tmp_path, pairing, *common, f"--pairing={pairing}")
        tok = m["tokens"]
        assert m["sentences"]["split"] >= 1 and m["sentences"]["pieces_added"] > 100
        assert tok["reached_instance_share"] > 0.85, tok
        assert set(tok["lost"]) <= {"chunk_end_truncation"} and m["reconciliation"]["ok"], m["reconciliation"]
    # The same text as a bert-format line keeps the reference's trim: counted, and said loudly.
    bert = tmp_path / "long.txt"
    bert.write_text(text + "\n\nA short second document.\nWith two lines.\n", encoding="utf-8")
    m, _ = _build(tmp_path, "bert", f"--input_file={bert}", f"--vocab_file={demo_vocab}", "--pairing=nsp",
                  "--max_predictions_per_seq=20")
    from pipeline.manifest import loss_warning
    assert m["tokens"]["reached_instance_share"] < 0.05 and m["tokens"]["lost"]["over_long_sentence"] > 0
    assert not m["reconciliation"]["ok"] and m["reconciliation"]["problems"] == [loss_warning(m)]


def test_build_summary_prints_share_and_warns_on_stderr(tmp_path, demo_vocab, capsys):
    from pipeline import build
    bert = tmp_path / "long.txt"
    bert.write_text(" ".join(["word"] * 3000) + "\n", encoding="utf-8")
    assert build.main([f"--input_file={bert}", f"--vocab_file={demo_vocab}", f"--output_dir={tmp_path / 'o'}",
                       "--pairing=sop", "--num_shards=1", "--dupe_factor=1", "--max_predictions_per_seq=20"]) == 0
    out, err = capsys.readouterr()
    assert "reached an instance" in out and "WARNING: only" in err and "tokens read reached an instance" in err


def test_kangyur_with_the_seed_albert_flags_keeps_every_token(tmp_path, kangyur_spm, seed_albert_build_flags):
    """Kangyur volume 33 (jsonl, no spaces, works up to 2.6 MB), a SentencePiece model trained here."""
    import sentencepiece as spm
    texts, model = kangyur_spm
    corpus = tmp_path / "kangyur.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"w{i}", "text": t[:150_000]}) + "\n" for i, t in enumerate(texts)),
                      encoding="utf-8")
    m, out = _build(tmp_path, "bo", f"--input_file={corpus}", "--input_format=jsonl",
                    f"--spm_model_file={model}", "--pairing=none", *seed_albert_build_flags)
    tok = m["tokens"]
    assert tok["reached_instance_share"] >= 0.99 and m["reconciliation"]["ok"], tok
    assert m["max_ngram_size"] == 3 and m["pairing"] == "none" and not m["favor_shorter_ngram"]
    # A record decodes back to Tibetan text from the volume.
    from transforms.example_codec import decode_example
    from transforms.tfrecord_io import read_records_from_path
    proc = spm.SentencePieceProcessor(model_file=str(model))
    ex = decode_example(next(iter(read_records_from_path(str(next(out.glob("train-*")))))))
    ids = np.array(ex["input_ids"])
    k = int(np.sum(ex["masked_lm_weights"]))
    ids[np.array(ex["masked_lm_positions"][:k], dtype=int)] = ex["masked_lm_ids"][:k]
    text = proc.decode([int(i) for i in ids[1:int(np.sum(ex["input_mask"])) - 1]])
    assert len(text) > 100 and sum("\u0f00" <= ch <= "\u0fff" for ch in text) > 0.8 * len(text.replace(" ", ""))
    assert text.replace(" ", "")[20:60] in "".join(texts).replace(" ", "")


def test_mlm_only_short_seq_prob_is_the_share_of_short_sequences_even_in_one_long_sentence():
    doc = [list(range(200_000))]
    stats = DocumentStats()
    insts = create_instances(doc, None, InstanceConfig(128, 0.1, "none"), random.Random(3), stats)
    short = sum(len(i.tokens_a) < 126 - 8 for i in insts[:-1])
    assert 0.07 < short / (len(insts) - 1) < 0.13, short / len(insts)
    assert _own_positions(insts) == doc[0]


@pytest.mark.parametrize("pairing,masking", [("nsp", "static"), ("sop", "static"), ("none", "dynamic")])
def test_rows_encoded_a_slice_at_a_time_give_the_bytes_of_one_pass(monkeypatch, pairing, masking):
    from transforms import bucket_builder
    cfg = BuildConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=3, pairing=pairing, num_shards=2,
                      do_whole_word_mask=True, masking=masking, write_document_ids=True)
    whole = build_tokenized_bucket(_synthetic_bucket(), cfg, _vocab())
    assert len(whole.records) > 50
    monkeypatch.setattr(bucket_builder, "CELLS_PER_PASS", 7 * 64)  # slices of 7 rows, the last one short
    sliced = build_tokenized_bucket(_synthetic_bucket(), cfg, _vocab())
    assert sliced.records == whole.records and sliced.counts == whole.counts
    assert (sliced.keys == whole.keys).all() and (sliced.shard_ids == whole.shard_ids).all()
