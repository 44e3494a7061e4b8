"""Instance creation by construction: SOP keeps both segments in one document, MLM-only is one segment."""
import random

import pytest

from transforms.instances import DocumentStats, InstanceConfig, create_instances

TOKENS_PER_DOC = 1_000_000
TOKENS_PER_SENTENCE = 1000


def _corpus(num_docs: int, seed: int):
    """Documents whose token ids encode (document, sentence, position): id = d*1e6 + s*1e3 + k."""
    rng = random.Random(seed)
    docs = []
    for d in range(num_docs):
        n_sent = rng.choice([1, 1, 2, 3, 5, 8, 13, 30])
        docs.append([[d * TOKENS_PER_DOC + s * TOKENS_PER_SENTENCE + k for k in range(rng.randint(1, 40))]
                     for s in range(n_sent)])
    return docs


def _where(token: int):
    return token // TOKENS_PER_DOC, (token % TOKENS_PER_DOC) // TOKENS_PER_SENTENCE


def _run(docs, cfg: InstanceConfig, copies: int = 4):
    """(doc index, instance, stats) for every copy of every document; random documents from the corpus."""
    out = []
    for d, doc in enumerate(docs):
        def pick(rng, _self=d):
            other = rng.randint(0, len(docs) - 2)
            return docs[other + 1 if other >= _self else other]
        for copy in range(copies):
            stats = DocumentStats()
            rng = random.Random(f"{d}/{copy}")
            for inst in create_instances(doc, pick, cfg, rng, stats):
                out.append((d, inst, stats))
    return out


def _check_same_document_order(d, inst):
    """Both segments from document d, each contiguous in the document, B before A iff label 1."""
    a_pos = [t % TOKENS_PER_DOC for t in inst.tokens_a]
    b_pos = [t % TOKENS_PER_DOC for t in inst.tokens_b]
    assert {_where(t)[0] for t in inst.tokens_a + inst.tokens_b} == {d}
    assert a_pos == sorted(a_pos) and b_pos == sorted(b_pos)
    if inst.is_random_next:
        assert max(b_pos) < min(a_pos), "label 1 must mean B precedes A in the document"
    else:
        assert max(a_pos) < min(b_pos), "label 0 must mean A precedes B in the document"


@pytest.mark.parametrize("max_seq_length", [16, 64])
def test_sop_segments_from_one_document_and_label_means_order(max_seq_length):
    docs = _corpus(300, seed=max_seq_length)
    cfg = InstanceConfig(max_seq_length=max_seq_length, short_seq_prob=0.1, pairing="sop")
    results = _run(docs, cfg)
    swapped = in_order = other_doc = 0
    for d, inst, _ in results:
        assert inst.tokens_a and inst.tokens_b
        assert len(inst.tokens_a) + len(inst.tokens_b) <= max_seq_length - 3
        if inst.b_from_other_document:
            # ALBERT: a one-sentence chunk is paired with another document and labelled 1.
            other_doc += 1
            assert inst.is_random_next
            assert {_where(t) for t in inst.tokens_a} == {_where(inst.tokens_a[0])}
            assert _where(inst.tokens_a[0])[0] == d
            assert {_where(t)[0] for t in inst.tokens_b} != {d}
            assert len({_where(t)[0] for t in inst.tokens_b}) == 1
        else:
            _check_same_document_order(d, inst)
            swapped += inst.is_random_next
            in_order += not inst.is_random_next
    n = swapped + in_order
    assert n > 1000 and other_doc > 0
    # Swap probability 0.5: within 4 standard deviations of a fair coin.
    assert abs(swapped / n - 0.5) < 4 * (0.25 / n) ** 0.5


@pytest.mark.parametrize("mode", ["split", "drop"])
def test_sop_single_sentence_alternatives_keep_one_document(mode):
    docs = _corpus(200, seed=7)
    cfg = InstanceConfig(max_seq_length=32, short_seq_prob=0.3, pairing="sop", sop_single_sentence=mode)
    results = _run(docs, cfg)
    labels = []
    for d, inst, _ in results:
        assert not inst.b_from_other_document
        _check_same_document_order(d, inst)
        labels.append(inst.is_random_next)
    assert abs(sum(labels) / len(labels) - 0.5) < 4 * (0.25 / len(labels)) ** 0.5
    split_made = sum(stats.sop_single_sentence_split for _, _, stats in results)
    assert (split_made > 0) == (mode == "split")


def test_sop_uses_every_sentence_once_nothing_put_back():
    """With every chunk paired inside its document, instance tokens + truncated tokens = document tokens."""
    docs = _corpus(200, seed=3)
    cfg = InstanceConfig(max_seq_length=48, short_seq_prob=0.2, pairing="sop", sop_single_sentence="split")
    for d, doc in enumerate(docs):
        stats = DocumentStats()
        insts = create_instances(doc, lambda rng: None, cfg, random.Random(d), stats)
        used = sorted(t for inst in insts for t in inst.tokens_a + inst.tokens_b)
        assert len(used) == len(set(used)), "a token was used twice (segments put back)"
        dropped_one_token = sum(1 for s in doc if len(s) == 1)  # a one-token single chunk cannot be split
        assert len(used) + stats.truncated_tokens <= sum(len(s) for s in doc)
        assert len(used) + stats.truncated_tokens >= sum(len(s) for s in doc) - dropped_one_token


def test_sop_single_sentence_without_other_document_is_dropped_and_counted():
    doc = [[1, 2, 3]]
    stats = DocumentStats()
    cfg = InstanceConfig(max_seq_length=16, pairing="sop")
    assert create_instances(doc, lambda rng: None, cfg, random.Random(0), stats) == []
    assert stats.chunks_dropped_no_pair == 1 and stats.random_next_unavailable == 1


@pytest.mark.parametrize("max_seq_length", [8, 64])
def test_none_is_one_segment_of_contiguous_sentences(max_seq_length):
    docs = _corpus(200, seed=11)
    cfg = InstanceConfig(max_seq_length=max_seq_length, short_seq_prob=0.1, pairing="none")
    for d, doc in enumerate(docs):
        stats = DocumentStats()
        insts = create_instances(doc, None, cfg, random.Random(d), stats)
        pos = []
        for inst in insts:
            assert inst.tokens_b == [] and not inst.is_random_next and inst.tokens_a
            assert len(inst.tokens_a) <= max_seq_length - 2
            assert {_where(t)[0] for t in inst.tokens_a} == {d}
            pos.extend(t % TOKENS_PER_DOC for t in inst.tokens_a)
        # In document order, nothing used twice, nothing lost but the truncated tokens.
        assert pos == sorted(pos) and len(pos) == len(set(pos))
        assert len(pos) + stats.truncated_tokens == sum(len(s) for s in doc)


def test_unknown_pairing_is_refused():
    with pytest.raises(ValueError, match="pairing"):
        create_instances([[1, 2]], None, InstanceConfig(pairing="xyz"), random.Random(0), DocumentStats())
    with pytest.raises(ValueError, match="sop_single_sentence"):
        create_instances([[1, 2]], None, InstanceConfig(pairing="sop", sop_single_sentence="xyz"),
                         random.Random(0), DocumentStats())


@pytest.mark.parametrize("seq,short_seq_prob", [(128, 0.1), (24, 0.3), (9, 0.5)])
def test_nsp_spans_equal_the_list_algorithm(seq, short_seq_prob):
    """The span fast path makes the same draws, instances and counters as `create_nsp_instances`."""
    import dataclasses
    import itertools
    from transforms.instances import nsp_instance_spans
    docs = _corpus(60, seq) + [[[7] * 300], [[8] * 200, [9] * 3]]  # over-long sentences too
    flat = [t for doc in docs for s in doc for t in s]
    doc_starts, total = [], 0
    for doc in docs:
        doc_starts.append(list(itertools.accumulate(map(len, doc), initial=total)))
        total = doc_starts[-1][-1]
    cfg = InstanceConfig(seq, short_seq_prob, "nsp")
    for d, doc in enumerate(docs):
        def pick(rng, _self=d):
            other = rng.randint(0, len(docs) - 2)
            return docs[other + 1 if other >= _self else other]
        for copy in range(3):
            want_stats, got_stats = DocumentStats(), DocumentStats()
            want_rng = random.Random(f"{d}/{copy}")
            want = create_instances(doc, pick, cfg, want_rng, want_stats)
            spans = []
            rng = random.Random(f"{d}/{copy}")
            assert nsp_instance_spans(doc_starts[d], d, doc_starts, cfg, rng, got_stats, spans) == len(want)
            got = [(flat[a0:a1], flat[b0:b1], bool(r)) for a0, a1, b0, b1, r in spans]
            assert got == [(i.tokens_a, i.tokens_b, i.is_random_next) for i in want]
            assert dataclasses.asdict(got_stats) == dataclasses.asdict(want_stats)
            assert rng.getstate() == want_rng.getstate()  # the same draws, not only the same results


def test_nsp_spans_without_another_document_drop_like_the_list_algorithm():
    import itertools
    from transforms.instances import nsp_instance_spans
    doc = [[1, 2, 3], [4, 5], [6]]
    starts = list(itertools.accumulate(map(len, doc), initial=0))
    cfg = InstanceConfig(8, 0.0, "nsp")
    for seed in range(20):
        want_stats, got_stats, spans = DocumentStats(), DocumentStats(), []
        want = create_instances(doc, lambda rng: None, cfg, random.Random(seed), want_stats)
        nsp_instance_spans(starts, 0, [starts], cfg, random.Random(seed), got_stats, spans)
        flat = [t for s in doc for t in s]
        assert [(flat[a0:a1], flat[b0:b1]) for a0, a1, b0, b1, _ in spans] == [(i.tokens_a, i.tokens_b) for i in want]
        assert got_stats == want_stats
