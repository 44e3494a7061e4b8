"""Reading a range into buckets (corpus_reader.read_buckets) and preparing documents per input format
(input_formats.prepare_documents): pure functions, Beam-free."""
import collections
import io

import pytest

from transforms import corpus_reader, input_formats
from transforms.corpus_reader import InputFile, InputRange, RawDocument


class _Splitter:
    def split(self, paragraph):
        return [s.strip() + "." for s in paragraph.split(".") if s.strip()]


def _range(path, size):
    return InputRange(InputFile(str(path), path.name, size, False), 0, size)


def test_read_buckets_counts_reader_and_parser_drops(tmp_path):
    lines = ['{"text": "One. Two."}', "not json", '{"text": "Three."}', '{"body": "x"}', '{"text": "Four. Five."}']
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    counts = {}
    buckets = list(corpus_reader.read_buckets(_range(path, path.stat().st_size), lambda p: io.open(p, "rb"),
                                              "jsonl", 2, 1 << 20, counts, _Splitter()))
    docs = [d for b in buckets for d in b]
    assert [d.lines for d in docs] == [["One.", "Two."], ["Three."], ["Four.", "Five."]]
    assert counts["documents_dropped.bad_jsonl"] == 2 and counts["documents_read"] == 2
    assert counts["lines_read"] == 5 and counts["ranges_read"] == 1


def test_read_buckets_counts_only_after_exhaustion(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a b\nc d\n\ne f\n\ng h\n\ni j\n")
    counts = {}
    it = corpus_reader.read_buckets(_range(path, path.stat().st_size), lambda p: io.open(p, "rb"), "bert",
                                    2, 1 << 20, counts)
    first = next(it)
    assert not counts and [d.key for d in first] == ["c.txt@0", "c.txt@9"]
    assert [[d.key for d in b] for b in it] == [["c.txt@14", "c.txt@19"]]
    assert counts["lines_read"] == 5 and counts["files_read"] == 1


def test_prepare_documents_text_and_bert():
    docs = [RawDocument("k@0", ["First one. Second one.", "  ", "Third."], "f:line 1")]
    out = list(input_formats.prepare_documents(docs, "text", _Splitter(), collections.Counter()))
    assert out[0].lines == ["First one.", "Second one.", "Third."]
    same = [RawDocument("k@0", ["a"], "f:line 1")]
    assert list(input_formats.prepare_documents(same, "bert", None, {})) == same


def test_sniff_input_messages(tmp_path):
    opener = lambda p: io.open(p, "rb")  # noqa: E731
    fake = tmp_path / "x.gz"
    fake.write_bytes(b"plain")
    with pytest.raises(corpus_reader.InputError, match="x.gz ends in .gz but is not gzip data"):
        corpus_reader.sniff_input(str(fake), 5, opener)
    utf16 = tmp_path / "u.txt"
    utf16.write_bytes("hi".encode("utf-16"))
    with pytest.raises(corpus_reader.InputError, match="UTF-16"):
        corpus_reader.sniff_input(str(utf16), 6, opener)
    ok = tmp_path / "ok"
    ok.write_bytes(b"\x1f\x8b" + b"\x00" * 3)
    with pytest.raises(corpus_reader.InputError, match="damaged at its start"):
        corpus_reader.sniff_input(str(ok), 5, opener)


def test_checked_range_fixes_an_unnamed_gzip_cut_by_the_launcher(tmp_path):
    import gzip
    opener = lambda p: io.open(p, "rb")  # noqa: E731
    path = tmp_path / "packed"
    path.write_bytes(gzip.compress(b"a b\n\nc d\n" * 100, mtime=0))
    size = path.stat().st_size
    guessed = corpus_reader.split_ranges([InputFile(str(path), "packed", size, False)], size // 3)
    assert len(guessed) > 1
    fixed = [r for rng in guessed for r in corpus_reader.checked_range(rng, opener)]
    assert len(fixed) == 1 and fixed[0].file.is_gzip and fixed[0].start == 0
    plain = tmp_path / "plain.txt"
    plain.write_text("a b\n")
    rng = InputRange(InputFile(str(plain), "plain.txt", 4, False), 0, 4)
    assert corpus_reader.checked_range(rng, opener) == [rng]
