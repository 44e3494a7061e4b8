"""WordPieceTokenizer gives exactly google-research/bert's ids (oracle: tests/reference_tokenization.py)."""
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_tokenization import ReferenceTokenizer, load_tokens  # noqa: E402
from transforms.wordpiece import WordPieceTokenizer, basic_tokenize, wordpiece_word  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")

TRICKY = [
    "Hello, World! It's a test.",
    "Jeg kjøper kaffe på café´en; ´tis Æble, ÅSE og Øyvind.",  # U+00B4 acute accent (Sk, not punctuation)
    "acute\u00b4inside and `backtick` and ^caret^ $dollar",
    "naïve résumé façade Ångström ÉCOLE",
    "e\u0301 combining, a\u030a, o\u0308\u0301 stacked",
    "日本語のテキストです。東京タワー（とうきょう）！",
    "中文字符测试，混合English文字。",
    "한국어 텍스트 입니다 강",
    "tab\there\rcarriage\x0bvertical\x0cformfeed",
    "ctrl\x01\x02\x03\x7f\x85chars",
    "nul\x00inside and\ufffdreplacement",
    "soft\u00adhyphen zero\u200bwidth joiner\u200dx lrm\u200e bom\ufeffx",
    "nbsp\u00a0ideographic\u3000space thin\u2009space",
    "line\u2028sep para\u2029sep next\u0085line",
    "ΣΊΣΥΦΟΣ ΟΔΟΣ. Σ ΑΣ\u00adΒ",
    "İstanbul İİ DİYARBAKIR ß STRASSE ǅ ǈ",
    "ﬁnance ﬂow ① ½ ™ ＡＢＣ１２３",
    "private\ue000use and unassigned\u0378char and \U000e0001tag",
    "x" * 150 + " " + "y" * 201 + " " + "ø" * 120 + " " + "é" * 210,
    "a" * 199 + "," + "b" * 250,
    "emoji 😀👍🏽 and math 𝐀𝐁 and 𠀀 ext-B",
    "",
    "   ",
    "unaffable unwanted running ##hash [CLS] [MASK]",
    "Greek varia \u1fef and oxia \u1ffd and \u037e question",
]


def _tiny_vocab(tmp_path: Path) -> str:
    """A small vocab exercising whole words, ## pieces, accents, CJK and punctuation (no ../shared)."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "##want", "##ed", "run",
              "##ning", "hello", "world", "test", "a", "it", "'", "s", ".", ",", "!", "#", "é", "##é", "e",
              "##e", "ø", "##ø", "x", "##x", "y", "##y", "b", "##b", "日", "本", "語", "の", "caf", "##e´en",
              "´", "ase", "σ", "ς", "##ς", "##σ", "i", "##i", "̇", "##̇", "ss", "ß", "fi", "ﬁ"]
    tokens += [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in tokens]
    tokens += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz" if "##" + c not in tokens]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    return str(path)


def _unpack(flat, splits):
    flat = flat.tolist()
    return [flat[a:b] for a, b in zip(splits[:-1].tolist(), splits[1:].tolist())]


def _check(vocab_path: str, lines, lower: bool, strip=None, exact_too: bool = True):
    ref = ReferenceTokenizer(load_tokens(vocab_path), do_lower_case=lower, strip_accents=strip)
    want = [ref.ids(x) for x in lines]
    tok = WordPieceTokenizer(vocab_path, do_lower_case=lower, strip_accents=strip)
    flat, splits = tok.tokenize_lines(lines)
    assert flat.dtype == np.int32 and splits.dtype == np.int64 and len(splits) == len(lines) + 1
    got = _unpack(flat, splits)
    bad = [(lines[i], want[i], got[i]) for i in range(len(lines)) if want[i] != got[i]]
    assert not bad, f"{len(bad)} of {len(lines)} lines differ, first: {bad[0]!r}"
    if exact_too:
        assert _unpack(*tok.tokenize_exact(lines)) == want
    return tok


@pytest.mark.parametrize("lower,strip", [(True, None), (False, None), (True, False)])
def test_tricky_lines_local_vocab(tmp_path, lower, strip):
    _check(_tiny_vocab(tmp_path), TRICKY, lower, strip)


@pytest.mark.parametrize("lower,strip", [(True, None), (False, None), (True, False)])
def test_random_unicode_fuzz(tmp_path, lower, strip):
    rng = random.Random(1234)
    alphabet = list("aAbBeEiIsSxX .,'!´`^-") + ["é", "É", "ø", "Ø", "å", "Å", "\u0301", "\u030a", "Σ", "σ",
                                                 "İ", "ß", "ﬁ", "日", "本", "の", "한", "\x00", "\x01", "\x7f",
                                                 "\ufffd", "\u00ad", "\u200b", "\u00a0", "\u3000", "\u2028",
                                                 "\t", "\r", "\u0378", "\ue000", "①", "Ａ", "😀", "\u1fef"]
    lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(1500)]
    lines += ["".join(rng.choice("aé\u0301ø") for _ in range(rng.randint(190, 215))) for _ in range(40)]
    _check(_tiny_vocab(tmp_path), lines, lower, strip)


def test_long_words_limit(tmp_path):
    vocab = _tiny_vocab(tmp_path)
    tok = WordPieceTokenizer(vocab, do_lower_case=True)
    unk = tok.vocab.unk_id
    ids, _ = tok.tokenize_lines(["x" * 200, "x" * 201, "ø" * 200, "ø" * 201])
    # 200 characters is still tokenized (the reference limit), 201 is [UNK]; bytes do not matter.
    assert _unpack(ids, np.array([0, 200, 201, 401, 402])) == [[tok.vocab.token_to_id["x"]] + [
        tok.vocab.token_to_id["##x"]] * 199, [unk], [tok.vocab.token_to_id["ø"]] + [
        tok.vocab.token_to_id["##ø"]] * 199, [unk]]
    old = WordPieceTokenizer(vocab, do_lower_case=True, max_input_chars_per_word=100)
    assert old.tokenize_lines(["x" * 101])[0].tolist() == [unk]
    _check(vocab, ["é" * 150 + "," + "é" * 201], True)


def test_empty_inputs(tmp_path):
    tok = WordPieceTokenizer(_tiny_vocab(tmp_path), do_lower_case=True)
    flat, splits = tok.tokenize_lines([])
    assert flat.tolist() == [] and splits.tolist() == [0]
    flat, splits = tok.tokenize_lines(["", "\x00", "hello", ""])
    assert splits.tolist() == [0, 0, 0, 1, 1]
    assert flat.tolist() == [tok.vocab.token_to_id["hello"]]


def test_newline_inside_a_line_is_whitespace(tmp_path):
    tok = _check(_tiny_vocab(tmp_path), ["hello\nworld", "a"], True)
    assert len(tok.tokenize_lines(["hello\nworld", "a"])[1]) == 3


def test_word_starts(tmp_path):
    tok = WordPieceTokenizer(_tiny_vocab(tmp_path), do_lower_case=True)
    ids, _ = tok.tokenize_lines(["unaffable hello"])
    assert [tok.vocab.tokens[i] for i in ids] == ["un", "##aff", "##able", "hello"]
    assert tok.word_starts(ids).tolist() == [True, False, False, True]


def test_import_is_light():
    code = "import sys, transforms.wordpiece; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_bmp_code_point_splits_like_the_reference():
    """normalize_text + the exact splitter equal the oracle's BasicTokenizer for each BMP character."""
    for lower, strip in ((True, True), (False, False), (True, False)):
        ref = ReferenceTokenizer(["[UNK]"], do_lower_case=lower, strip_accents=strip)
        bad = [cp for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF
               and ref.basic_tokenize(f"a{chr(cp)}b") != basic_tokenize(f"a{chr(cp)}b", lower, strip)]
        assert not bad, [hex(c) for c in bad[:10]]


def test_small_cache_gives_the_same_ids(tmp_path):
    """The chunk cache only saves work: clearing it over and over changes no id."""
    vocab = _tiny_vocab(tmp_path)
    rng = random.Random(7)
    lines = [" ".join(rng.choice(["hello,", "world.", "unaffable", "x" * rng.randint(1, 9), "日本", "é!"])
                      for _ in range(rng.randint(0, 12))) for _ in range(300)]
    big = WordPieceTokenizer(vocab, do_lower_case=True)
    small = WordPieceTokenizer(vocab, do_lower_case=True, cache_limit=8)
    want = _unpack(*big.tokenize_exact(lines))
    for i in range(0, len(lines), 25):
        assert _unpack(*small.tokenize_lines(lines[i:i + 25])) == want[i:i + 25]
        assert _unpack(*big.tokenize_lines(lines[i:i + 25])) == want[i:i + 25]
    assert small.cache_clears > 0 and big.cache_clears == 0


def test_wordpiece_word_equals_the_reference_greedy_match(tmp_path):
    """The shortcuts (whole word first, longest-entry bounds) change no result, [UNK] and empty included."""
    vocab_path = _tiny_vocab(tmp_path)
    tok = WordPieceTokenizer(vocab_path, do_lower_case=True)
    ref = ReferenceTokenizer(load_tokens(vocab_path), do_lower_case=True)
    t2i, unk = tok.vocab.token_to_id, tok.vocab.unk_id
    rng = random.Random(5)
    words = ["", "a", "q", "unaffable", "unwanted", "x" * 40, "caf" + "e´en", "hellohello", "aéø" * 5,
             "runningunaffable", "ß", "ﬁ"]
    words += ["".join(rng.choice("abexyø´é") for _ in range(rng.randint(1, 30))) for _ in range(2000)]
    bounds = [(None, None), (tok._longest_token, tok._longest_continuation)]
    for word in words:
        want = [t2i[t] for t in ref.wordpiece(word)]
        for first, rest in bounds:
            assert wordpiece_word(word, t2i, unk, 200, first, rest) == want, (word, first, rest)


def test_unicode_tables_cached_on_disk_equal_computed(tmp_path, monkeypatch):
    from transforms import wordpiece
    monkeypatch.setenv("BERTBEAM_CACHE_DIR", str(tmp_path))
    computed = wordpiece._compute_flags()
    first = wordpiece._disk_cached("flags", wordpiece._compute_flags)  # computes and saves
    assert len(list(tmp_path.glob("flags-*.npy"))) == 1
    again = wordpiece._disk_cached("flags", lambda: pytest.fail("recomputed despite the cache"))
    assert np.array_equal(first, computed) and np.array_equal(again, computed)
    want = wordpiece._compute_case_map(True, True)
    wordpiece._disk_cached("casemap11", lambda: want)
    assert np.array_equal(wordpiece._disk_cached("casemap11", lambda: None), want)
    monkeypatch.setenv("BERTBEAM_CACHE_DIR", "")
    assert wordpiece._cache_path("flags") is None


def test_tokenizing_never_imports_tensorflow(tmp_path):
    code = ("import sys; from transforms.wordpiece import WordPieceTokenizer as T; "
            f"t = T({_tiny_vocab(tmp_path)!r}, True); t.tokenize_lines(['hello 日本 é']); "
            "print(sorted(m for m in ('tensorflow', 'tensorflow_text') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


SETTINGS = [  # vocab dir, lower, strip_accents, files (path, first N lines or None for all)
    ("bert_base_uncased", True, None, [("corpora/en_books_dev.txt", 2500), ("text/bert_sample_text.txt", None)]),
    ("bert_base_cased", False, None, [("corpora/en_books_dev.txt", 1500), ("text/alice_11-0.txt", 1500)]),
    ("bert_multilingual_cased", False, None, [("corpora/no_ud_dev.txt", None),
                                              ("text/wagahaiwa_nekodearu.txt", 300)]),
    ("norwegian_uncased_50k", True, None, [("corpora/no_ud_dev.txt", None),
                                           ("text/talk_of_norway/sentences_1k_nob.txt", None)]),
    ("norwegian_uncased_50k", True, False, [("corpora/no_ud_dev.txt", None)]),
]


def _read_lines(path: Path):
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    return [x[:-1] if x.endswith("\r") else x for x in text.split("\n")]


@needs_shared
@pytest.mark.parametrize("vdir,lower,strip,files", SETTINGS)
def test_shared_corpora_agree_100_percent(vdir, lower, strip, files):
    lines = []
    for rel, n in files:
        lines += _read_lines(DATA / rel)[:n]
    _check(str(DATA / "vocab" / vdir / "vocab.txt"), lines, lower, strip, exact_too=False)


@needs_shared
def test_shared_tiny_vocab_and_norwegian_special_ids():
    _check(str(DATA / "vocab" / "tiny" / "vocab.txt"), TRICKY + ["this is a test"], True)
    tok = WordPieceTokenizer(str(DATA / "vocab" / "norwegian_uncased_50k" / "vocab.txt"), do_lower_case=True)
    assert tok.vocab.unk_id == 505
    assert tok.tokenize_lines(["\ue000"])[0].tolist() == [505]


def _rust_vs_python_words(vocab_path: str, words):
    tok = WordPieceTokenizer(vocab_path, do_lower_case=True)
    assert tok._rust_tokenizer() is not None, "tokenizers' WordPiece model is not in use"
    want = [wordpiece_word(w, tok._token_to_id, tok._unk_id, tok.max_input_chars_per_word) for w in words]
    got = tok.wordpiece_words(words)
    bad = [(w, a, b) for w, a, b in zip(words, want, got) if a != b]
    assert not bad, f"{len(bad)} of {len(words)} words differ, first: {bad[0]!r}"


def _bmp_words():
    words = []
    for cp in range(1, 0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        words += [c, "a" + c, c + "a", c + c, "un" + c + "able"]
    words += ["x" * 199, "x" * 200, "x" * 201, "é" * 200, "é" * 201, "unaffable" * 22, "日本" * 100]
    return words


def test_rust_wordpiece_equals_python_on_every_bmp_code_point_tiny_vocab(tmp_path):
    _rust_vs_python_words(_tiny_vocab(tmp_path), _bmp_words())


@needs_shared
@pytest.mark.parametrize("vdir", ["bert_base_uncased", "bert_multilingual_cased", "norwegian_uncased_50k"])
def test_rust_wordpiece_equals_python_on_every_bmp_code_point(vdir):
    _rust_vs_python_words(str(DATA / "vocab" / vdir / "vocab.txt"), _bmp_words())


def test_python_wordpiece_path_still_matches_when_rust_is_off(tmp_path):
    vocab = _tiny_vocab(tmp_path)
    on = WordPieceTokenizer(vocab, do_lower_case=True)
    off = WordPieceTokenizer(vocab, do_lower_case=True, use_rust_wordpiece=False)
    assert off._rust is None and [list(x) for x in on.tokenize_lines(TRICKY)] == \
        [list(x) for x in off.tokenize_lines(TRICKY)]
    assert off._rust is None  # never built when turned off


def test_cache_cleared_while_lines_repeat_cached_chunks(tmp_path):
    """A full cache is cleared when new chunks come with chunks it held: every chunk of those lines must still
    get its ids (it once raised KeyError for the chunks cached before the clear)."""
    vocab = _tiny_vocab(tmp_path)
    tok = WordPieceTokenizer(vocab, do_lower_case=True, cache_limit=6)
    first = ["hello, world.", "unaffable"]
    second = ["hello, world. unaffable xx yyy zzzz é!", "", "日本 hello,"]
    for lines in (first, second, first, second):
        assert _unpack(*tok.tokenize_lines(lines)) == _unpack(*tok.tokenize_exact(lines))
    assert tok.cache_clears >= 1


def test_one_tokenizer_shared_by_threads_gives_every_thread_its_exact_ids(tmp_path):
    """A worker process shares one tokenizer among its bundles (Beam's multi_threading mode, Dask workers with
    several threads): concurrent calls that fill and clear the chunk cache must each get their own lines' ids."""
    import threading
    vocab = _tiny_vocab(tmp_path)
    tok = WordPieceTokenizer(vocab, do_lower_case=True, cache_limit=40)
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyz,.!é日"
    batches = [[" ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7)))
                         for _ in range(rng.randint(1, 12))) for _ in range(20)] for _ in range(60)]
    want = [_unpack(*tok.tokenize_exact(lines)) for lines in batches]
    got = [None] * len(batches)
    errors = []

    def work(indices):
        try:
            for i in indices:
                got[i] = _unpack(*tok.tokenize_lines(batches[i]))
        except Exception as e:  # pylint: disable=broad-except
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(range(k, len(batches), 4),)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    assert got == want
    assert tok.cache_clears >= 1


def test_tokenizer_pickles_with_its_cache(tmp_path):
    import pickle
    tok = WordPieceTokenizer(_tiny_vocab(tmp_path), do_lower_case=True)
    lines = ["hello, world.", "unaffable 日本"]
    first = _unpack(*tok.tokenize_lines(lines))
    copy = pickle.loads(pickle.dumps(tok))
    assert _unpack(*copy.tokenize_lines(lines)) == first == _unpack(*tok.tokenize_exact(lines))
