"""The range reader: same documents for every split and read size; line ends, BOM, bad bytes, long lines, gzip damage."""
import gzip
import io
import random
import re
import tracemalloc

import pytest

from transforms import corpus_reader as cr


def read_all(data: bytes, split: int = 10 ** 9, fmt: str = "bert", limit=None, is_gzip=False):
    """(documents as (key, lines), stats) of in-memory bytes read as one file cut into ranges of `split` bytes."""
    f = cr.InputFile("mem", "mem", len(data), is_gzip)
    stats = cr.ReadStats()
    docs = []
    for rng in cr.split_ranges([f], split):
        docs += [(d.key, d.lines) for d in cr.iter_documents(rng, lambda _: io.BytesIO(data), fmt, stats, limit)]
    return docs, stats


def model_documents(data: bytes):
    """An independent statement of the format: lines end at LF/CRLF/CR, a BOM opens the file, blank = strip()."""
    if data.startswith(cr.UTF8_BOM):
        data = data[3:]
    docs, current = [], []
    for raw in re.split(rb"\r\n|\r|\n", data):
        line = raw.decode("utf-8", errors="replace")
        if line.strip():
            current.append(line.strip())
        elif current:
            docs.append(current)
            current = []
    if current:
        docs.append(current)
    return docs


ALPHABET = [b"a", b"b", b" ", b"\n", b"\r", b"\r\n", cr.UTF8_BOM, b"\xc2\xa0", b"\xe3\x80\x80", b"\xff", b"\x00",
            b"\t", b"\x1c", b"\xe2\x80\x94", b"\xbb", b"xyz"]


@pytest.mark.parametrize("seed", range(4))
def test_every_split_and_read_size_gives_the_same_documents(seed, monkeypatch):
    """Fuzz: line ends of all kinds, BOMs, invalid bytes, Unicode spaces and over-long lines, at every
    range split and read-chunk size, give the documents (and drop counts) of one whole-file read."""
    rnd = random.Random(seed)
    for _ in range(250):
        weights = [rnd.random() for _ in ALPHABET]
        data = b"".join(rnd.choices(ALPHABET, weights=weights, k=rnd.randint(0, 60)))
        limit = rnd.choice([4, 8, 1 << 20])
        monkeypatch.setattr(cr, "READ_CHUNK_BYTES", 1 << 20)
        whole, stats = read_all(data, limit=limit)
        expect = (whole, dict(stats.documents_dropped), stats.lines, stats.lines_too_long)
        if limit == 1 << 20:
            assert [lines for _, lines in whole] == model_documents(data), data
        monkeypatch.setattr(cr, "READ_CHUNK_BYTES", rnd.choice([1, 2, 3, 7]))
        for split in (1, 2, 3, 5, 13):
            docs, st = read_all(data, split, limit=limit)
            assert (docs, dict(st.documents_dropped), st.lines, st.lines_too_long) == expect, (data, split, limit)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_lf_crlf_and_lone_cr_files_read_alike(eol):
    docs = [["First sentence.", "Second one."], ["Another document."], ["x", "y", "z"]]
    data = cr.UTF8_BOM + eol.join(eol.join(s.encode() for s in d) + eol for d in docs)
    for split in (1, 4, 17, 10 ** 9):
        got, stats = read_all(data, split)
        assert [lines for _, lines in got] == docs
        assert stats.bom_removed == 1
        assert not any("\ufeff" in l or "\r" in l for _, lines in got for l in lines)


def test_invalid_utf8_is_replaced_and_counted_nul_and_controls_kept_for_the_tokenizer():
    data = b"caf\xe9 latin-1 line\nok line\n\x00\x01\x02\n\nnext doc \x00with nul\n"
    docs, stats = read_all(data)
    assert docs[0][1][0] == "caf\ufffd latin-1 line"
    assert stats.invalid_utf8_lines == 1
    # NUL/control-only lines are not blank (as in the reference): the tokenizer cleans them to nothing
    # and the pipeline counts them as sentences_empty_after_tokenization.
    assert docs[0][1][2] == "\x00\x01\x02" and len(docs) == 2


def test_over_long_line_drops_its_document_in_bounded_memory(tmp_path):
    """A 50 MB line: never held in memory; its document is dropped and counted; the others survive."""
    path = tmp_path / "long.txt"
    with open(path, "wb") as f:
        f.write(b"before one.\nbefore two.\n\nstarts here.\n")
        block = b"word " * (1 << 18)  # 1.25 MiB
        for _ in range(40):
            f.write(block)
        f.write(b"\nsame document.\n\nafter.\n")
    size = path.stat().st_size
    assert size > 50_000_000
    f = cr.InputFile(str(path), "long.txt", size, False)
    tracemalloc.start()
    for split in (10 ** 10, 7_000_000):
        stats = cr.ReadStats()
        docs = [d.lines for r in cr.split_ranges([f], split) for d in cr.iter_documents(r, cr.local_opener, "bert", stats)]
        assert docs == [["before one.", "before two."], ["after."]]
        assert stats.as_counts()["documents_dropped.line_too_long"] == 1
        assert stats.as_counts()["lines_dropped.line_too_long"] == 3 and stats.lines_too_long == 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, f"reading a 50 MB line peaked at {peak} bytes of Python memory"
    # Raising the limit keeps it (the document is then whole).
    stats = cr.ReadStats()
    docs = [d for r in cr.split_ranges([f], 10 ** 10)
            for d in cr.iter_documents(r, cr.local_opener, "bert", stats, max_line_bytes=64 << 20)]
    assert len(docs) == 3 and len(docs[1].lines[1]) > 50_000_000 - 100


def test_jsonl_over_long_line_is_one_dropped_document():
    data = b'{"text": "a"}\n{"text": "' + b"x" * 100 + b'"}\n{"text": "b"}\n'
    docs, stats = read_all(data, fmt="jsonl", limit=50)
    assert [d[1] for d in docs] == [['{"text": "a"}'], ['{"text": "b"}']]
    assert stats.as_counts()["documents_dropped.line_too_long"] == 1


def _gz_corpus(n_docs=20000):
    text = "\n".join(f"doc {d} line one.\ndoc {d} line two.\n" for d in range(n_docs))
    return gzip.compress(text.encode())


def _members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(p) for p in parts)


def _doc_text(first: int, last: int) -> bytes:
    return "".join(f"doc {d} line one.\ndoc {d} line two.\n\n" for d in range(first, last)).encode()


def test_verify_gzip_checks_every_member_and_bounds_the_verified_text():
    text = _doc_text(0, 2000)
    ok = cr.verify_gzip(io.BytesIO(_members(text[:1000], text[1000:]) + b"\0" * 9))  # zero padding is allowed
    assert ok == cr.GzipCheck(len(text))
    gz = gzip.compress(text)
    assert cr.verify_gzip(io.BytesIO(gz[:-1])).reason == "gzip_truncated"
    assert cr.verify_gzip(io.BytesIO(gz[: len(gz) // 2])) == cr.GzipCheck(0, "gzip_truncated",
                                                                          "the stream ends inside a member")
    crc = bytearray(gz)
    crc[-6] ^= 1  # the stored CRC-32: every byte of text decompresses, none of it is verified
    assert cr.verify_gzip(io.BytesIO(bytes(crc))).reason == "gzip_corrupt"
    second_bad = bytearray(_members(text[:1000], text[1000:]))
    second_bad[-6] ^= 1
    check = cr.verify_gzip(io.BytesIO(bytes(second_bad)))
    assert (check.verified_bytes, check.reason) == (1000, "gzip_corrupt")  # the first member still counts
    assert cr.verify_gzip(io.BytesIO(gz + b"xx")).reason == "gzip_corrupt"  # trailing bytes that are no member


def test_truncated_gzip_drops_every_unverified_document_and_counts_them():
    gz = _gz_corpus()
    docs, stats = read_all(gz[: len(gz) // 2], is_gzip=True)
    counts = stats.as_counts()
    # One member, cut: nothing of it passed a checksum, so nothing is used; every document read is counted.
    assert docs == [] and counts["documents_dropped.gzip_damaged"] > 5000
    assert counts["documents_read"] == counts["documents_dropped.gzip_damaged"]
    assert counts["files_damaged.gzip_truncated:mem"] == 1
    # Two members, the second cut: the first member's documents are kept, whole and in order.
    text = _doc_text(0, 20000)
    cut = text.index(b"doc 5000 line one.")
    two = _members(text[:cut], text[cut:])
    docs, stats = read_all(two[:-100], is_gzip=True)
    assert [d[1][0] for d in docs] == [f"doc {d} line one." for d in range(5000)]
    assert stats.damaged_files == {"mem": "gzip_truncated"}
    assert 14000 < stats.as_counts()["documents_dropped.gzip_damaged"] <= 15000


def test_corrupt_gzip_leaks_no_text_into_documents():
    """64 bytes overwritten mid-stream: deflate may decode garbage up to the CRC check at the member's end."""
    text = _doc_text(0, 20000)
    cut = text.index(b"doc 4000 line one.")
    for seed in range(6):
        data = bytearray(_members(text[:cut], text[cut:]))
        spot = len(data) * 3 // 4
        data[spot: spot + 64] = bytes(random.Random(seed).randrange(256) for _ in range(64))
        docs, stats = read_all(bytes(data), is_gzip=True)
        assert stats.damaged_files == {"mem": "gzip_corrupt"}
        assert [d[1] for d in docs] == [[f"doc {d} line one.", f"doc {d} line two."] for d in range(4000)]
        counts = stats.as_counts()
        assert counts["documents_read"] == counts.get("documents_dropped.gzip_damaged", 0)  # read, all dropped
        assert stats.invalid_utf8_lines == 0 or counts["documents_dropped.gzip_damaged"] > 0


def test_gzip_is_read_by_content_and_empty_files_are_counted():
    plain = b"one.\ntwo.\n\nthree.\n"
    assert read_all(gzip.compress(plain), is_gzip=True)[0] == read_all(plain)[0]
    docs, stats = read_all(b"")
    assert docs == [] and stats.as_counts()["files_empty"] == 1
    docs, stats = read_all(b"\n\n \r\n")
    assert docs == [] and stats.as_counts()["files_empty"] == 0 and stats.as_counts()["files_read"] == 1


def test_missing_file_at_read_time_names_it():
    f = cr.InputFile("/nonexistent/gone.txt", "gone.txt", 10, False)
    with pytest.raises(cr.InputError, match="gone.txt"):
        list(cr.iter_documents(cr.split_ranges([f], 100)[0], cr.local_opener, "bert", cr.ReadStats()))
