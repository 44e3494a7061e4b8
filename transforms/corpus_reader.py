"""Reading corpora as whole documents from byte ranges of files (local or gs://, gzip), pure Python.

A file is cut into byte ranges so that a 100 MB+ file is never one element. A range owns the
documents whose first line starts inside it; it reads a document it owns to the end even past the
range end, and skips the tail of a document that began in an earlier range. Every range therefore
decides document boundaries from the bytes alone, so any split gives the same documents.

Lines end at LF, CRLF or a lone CR. Memory per range is bounded by `max_line_bytes`: a longer line is
never held; the document holding it is dropped and counted (`documents_dropped.line_too_long`). A
gzip file is verified whole before it is read (every member's CRC-32 and length): a truncated or corrupt
one keeps the documents that lie wholly in the members before the damage, drops every document with text
past it (`documents_dropped.gzip_damaged`, text that fails or lacks its checksum never reaches an
instance) and names the file in the counts.
"""
import collections
import dataclasses
import gzip
import io
import logging
import os
import re
import zlib
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# Longest line held in memory, per input format: a "sentence" over 1 MiB is not a sentence (a file
# without line breaks, or binary data), while a jsonl line is a whole document and may be large.
DEFAULT_MAX_LINE_BYTES = {"bert": 1 << 20, "text": 4 << 20, "jsonl": 64 << 20}
READ_CHUNK_BYTES = 1 << 20
_EOL = re.compile(rb"\r\n|\r|\n")
# Bytes that can occur in a line that str.strip() empties (ASCII whitespace incl. \x1c-\x1f, and the
# UTF-8 lead/continuation bytes of U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028/9, U+202F, U+205F,
# U+3000). Any other byte makes the line non-blank, which lets a backward scan stop early.
_MAYBE_BLANK = frozenset(b"\t\x0b\x0c\x1c\x1d\x1e\x1f " + bytes(range(0x80, 0xC0)) + b"\xc2\xe1\xe2\xe3")
INPUT_FORMATS = ("bert", "text", "jsonl")


class InputError(ValueError):
    """A problem with the input files, reported before or while reading; names the file."""


@dataclasses.dataclass(frozen=True)
class InputFile:
    path: str  # as matched (local path or gs://...)
    key: str  # path relative to the common root of all inputs: stable element key
    size: int  # bytes on storage
    is_gzip: bool  # by content (magic bytes), not by extension


@dataclasses.dataclass(frozen=True)
class InputRange:
    file: InputFile
    start: int  # first byte owned (of the decompressed stream for gzip, which is never split)
    end: int  # one past the last byte owned


@dataclasses.dataclass
class RawDocument:
    key: str  # "<file key>@<byte offset of its first line>"
    lines: List[str]  # non-blank lines, decoded and stripped of line ends
    source: str  # "path:line N" or "path@byte N" for messages
    doc_id: Optional[str] = None  # from --id_field for jsonl
    invalid_utf8_lines: int = 0  # of its lines, those with bytes that are not UTF-8


@dataclasses.dataclass
class ReadStats:
    """What the reader saw and dropped in one range (summed over ranges into the manifest)."""

    lines: int = 0  # non-blank lines in documents owned by the range (dropped ones included)
    invalid_utf8_lines: int = 0  # lines with bytes that are not UTF-8 (replaced by U+FFFD)
    invalid_utf8_lines_dropped: int = 0  # of them, lines of documents the reader dropped (never used)
    bom_removed: int = 0
    files: int = 0  # ranges that start a file
    empty_files: int = 0  # files with no bytes at all (after decompression)
    lines_too_long: int = 0  # lines over max_line_bytes (their documents are dropped)
    documents_dropped: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)
    lines_dropped: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)
    damaged_files: Dict[str, str] = dataclasses.field(default_factory=dict)  # file key -> reason

    def drop(self, reason: str, doc: "RawDocument") -> None:
        self.documents_dropped[reason] += 1
        self.lines_dropped[reason] += len(doc.lines)
        self.invalid_utf8_lines_dropped += doc.invalid_utf8_lines

    def as_counts(self) -> Dict[str, int]:
        """Counters in the pipeline's flat form; documents the reader dropped count as read and dropped."""
        counts: Dict[str, int] = collections.Counter({
            "lines_read": self.lines, "lines_invalid_utf8": self.invalid_utf8_lines,
            "lines_invalid_utf8_dropped": self.invalid_utf8_lines_dropped,
            "bom_removed": self.bom_removed, "files_read": self.files, "files_empty": self.empty_files,
            "lines_too_long": self.lines_too_long, "ranges_read": 1})
        for reason, n in self.documents_dropped.items():
            counts["documents_read"] += n
            counts[f"documents_dropped.{reason}"] += n
        for reason, n in self.lines_dropped.items():
            counts[f"lines_dropped.{reason}"] += n
        for key, reason in self.damaged_files.items():
            # Names travel through the summed counters as keys: "files_damaged.<reason>:<file key>".
            counts[f"files_damaged.{reason}:{key}"] = 1
        return dict(counts)


def common_root(paths: Sequence[str]) -> str:
    """Longest common directory prefix of the paths (with trailing separator), for stable keys."""
    if not paths:
        return ""
    dirs = [p.rsplit("/", 1)[0] + "/" if "/" in p else "" for p in paths]
    prefix = os.path.commonprefix(dirs)
    return prefix[: prefix.rfind("/") + 1] if "/" in prefix else ""


def split_ranges(files: Sequence[InputFile], split_bytes: int) -> List[InputRange]:
    """Cuts each file into ranges of about split_bytes; gzip files stay whole (they cannot be seeked)."""
    ranges: List[InputRange] = []
    for f in files:
        if f.is_gzip or f.size <= split_bytes:
            ranges.append(InputRange(f, 0, max(f.size, 1) if not f.is_gzip else 1 << 62))
            continue
        start = 0
        while start < f.size:
            end = min(f.size, start + split_bytes)
            ranges.append(InputRange(f, start, end))
            start = end
    return ranges


def sniff_input(path: str, size: int, opener: Callable[[str], BinaryIO]) -> bool:
    """Whether the file is gzip (by its magic bytes, whatever its name), after checking that its first bytes
    can be read: raises InputError naming the file for a mislabelled .gz, a gzip stream damaged at its start,
    or UTF-16/UTF-32 text. Reads a few bytes only (one open; two for gzip)."""
    try:
        with opener(path) as f:
            head = f.read(4)
    except (OSError, IOError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    is_gzip = head[:2] == GZIP_MAGIC
    if path.endswith(".gz") and not is_gzip and size > 0:
        raise InputError(f"{path} ends in .gz but is not gzip data (rename it or recompress it)")
    if is_gzip:
        # Decompressing the first bytes is cheap and catches a damaged header or a stub file now;
        # damage further in is found while reading and counted (documents_dropped.gzip_damaged).
        try:
            with opener(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                head = gz.read1(4)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{path}: gzip data is damaged at its start ({e}); check it with `gzip -t`") from e
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(f"{path} is UTF-16 or UTF-32 text (it starts with a byte-order mark); "
                         f"convert it to UTF-8, e.g. iconv -f UTF-16 -t UTF-8")
    return is_gzip


def ranges_for_file(f: InputFile, split_bytes: int, opener: Optional[Callable[[str], BinaryIO]] = None
                    ) -> List[InputRange]:
    """The ranges of one input file; with an opener, its content is sniffed first (sniff_input), so that a
    launcher that only listed the files (sizes, no reads) leaves the checks to the workers."""
    if opener is not None:
        f = dataclasses.replace(f, is_gzip=sniff_input(f.path, f.size, opener))
    return split_ranges([f], split_bytes)


def checked_range(rng: InputRange, opener: Callable[[str], BinaryIO]) -> List[InputRange]:
    """A range the launcher cut from names and sizes only (gzip guessed from `.gz`), checked on a worker by
    content (sniff_input's errors). A gzip file without `.gz` cannot be split: its first range becomes the
    whole stream and its other ranges are dropped."""
    is_gzip = sniff_input(rng.file.path, rng.file.size, opener)
    if is_gzip == rng.file.is_gzip:
        return [rng]
    if rng.start > 0:
        return []
    return split_ranges([dataclasses.replace(rng.file, is_gzip=is_gzip)], 1)


def decode_line(raw: bytes, stats: ReadStats) -> str:
    """UTF-8 decoding; invalid bytes become U+FFFD (removed later by tokenizer cleaning) and are counted."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_lines += 1
        return raw.decode("utf-8", errors="replace")


def strip_eol(line: bytes) -> bytes:
    """A line without its terminator (LF, CRLF or CR: a line holds no other CR or LF)."""
    return line.rstrip(b"\r\n")


def is_blank(line: str) -> bool:
    """The reference's document separator: a line that is empty after str.strip()."""
    return not line.strip()


class DamagedInput(Exception):
    """A gzip stream ended early or holds corrupt data; `reason` is gzip_truncated or gzip_corrupt."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _read_chunk(stream: BinaryIO, size: int) -> bytes:
    try:
        if isinstance(stream, gzip.GzipFile):
            # read1: one decompression step, so the data before a damaged spot is returned, not lost
            # inside a buffered read that then raises.
            return stream.read1(size)
        return stream.read(size)
    except EOFError as e:  # gzip: "Compressed file ended before the end-of-stream marker was reached"
        raise DamagedInput("gzip_truncated", str(e)) from e
    except (zlib.error, gzip.BadGzipFile) as e:
        raise DamagedInput("gzip_corrupt", str(e)) from e


def read_lines(stream: BinaryIO, max_line_bytes: int, chunk_bytes: Optional[int] = None
               ) -> Iterator[Tuple[Optional[bytes], int]]:
    """(line with its terminator, length in bytes) for each line from the stream's position on.

    Lines end at LF, CRLF or a lone CR; a CRLF split across two reads stays one terminator. A line
    longer than max_line_bytes is never held: it comes as (None, length). Raises DamagedInput (after
    yielding every line read before the damage, the cut one included) when a gzip stream is damaged.
    """
    parts: List[bytes] = []  # pieces of a line that spans reads (unless it is over the limit)
    length = 0  # bytes of that line so far
    too_long = False
    pending_cr = False  # that line ends in a CR that was the last byte read: CRLF or a lone CR?
    chunk_bytes = chunk_bytes or READ_CHUNK_BYTES
    while True:
        try:
            chunk = _read_chunk(stream, chunk_bytes)
        except DamagedInput:
            if length:
                yield (None if too_long else b"".join(parts)), length
            raise
        if not chunk:
            if length:
                yield (None if too_long else b"".join(parts)), length
            return
        i, n = 0, len(chunk)
        if pending_cr:
            if chunk[:1] == b"\n":
                length += 1
                i = 1
                if length > max_line_bytes:
                    too_long, parts = True, []
                if not too_long:
                    parts.append(b"\n")
            yield (None if too_long else b"".join(parts)), length
            parts, length, too_long, pending_cr = [], 0, False, False
        while i < n:
            if not length:
                # Fast path: every complete line up to the last terminator, split in C (bytes.splitlines
                # ends lines at exactly LF, CRLF and CR). A CR as the last byte read waits for the next read.
                cut = max(chunk.rfind(b"\n", i), chunk.rfind(b"\r", i, n - 1)) + 1
                if cut > i:
                    for line in chunk[i:cut].splitlines(True):
                        size = len(line)
                        yield (line if size <= max_line_bytes else None), size
                    i = cut
                    if i >= n:
                        break
            m = _EOL.search(chunk, i)
            end = n if m is None else m.end()
            open_end = m is None or (end == n and chunk[end - 1] == 0x0D)
            if not length and not open_end:  # the common case: a whole line inside this read
                yield (chunk[i:end] if end - i <= max_line_bytes else None), end - i
                i = end
                continue
            if not too_long and length + end - i > max_line_bytes:
                too_long, parts = True, []
            if not too_long:
                parts.append(chunk[i:end])
            length += end - i
            i = end
            if open_end:
                pending_cr = m is not None
                break
            yield (None if too_long else b"".join(parts)), length
            parts, length, too_long = [], 0, False


def _previous_line_is_blank(f: BinaryIO, pos: int, max_line_bytes: int) -> bool:
    """Whether the line before the line starting at byte `pos` (> 0) is blank, as the forward reader decides.

    Scans backwards from the previous line's terminator and stops at the first byte that cannot be
    part of a blank line, so it stays cheap even after long lines. A line over max_line_bytes is
    never blank (the forward reader does not hold it), and a BOM opening the file is ignored.
    """
    f.seek(max(0, pos - 2))
    end = pos - 1  # f[end] is the terminator ('\n' or a lone '\r') of the previous line
    if f.read(pos - max(0, pos - 2)).endswith(b"\r\n"):
        end -= 1
    line_start = 0
    cursor = end
    block = 256
    while cursor > 0 and line_start == 0:
        start = max(0, cursor - block)
        f.seek(start)
        chunk = f.read(cursor - start)
        for i in range(len(chunk) - 1, -1, -1):
            b = chunk[i]
            if b in (0x0A, 0x0D):
                line_start = start + i + 1
                break
            if b not in _MAYBE_BLANK and start + i >= len(UTF8_BOM):
                return False
        if not line_start and pos - start > max_line_bytes:
            return False  # longer than the limit, terminator included, as read_lines measures
        cursor = start
        block = min(block * 4, 1 << 20)
    if pos - line_start > max_line_bytes:
        return False
    f.seek(line_start)
    line = f.read(end - line_start)
    if line_start == 0 and line.startswith(UTF8_BOM):
        line = line[len(UTF8_BOM):]
    return is_blank(line.decode("utf-8", errors="replace"))


@dataclasses.dataclass(frozen=True)
class GzipCheck:
    """What a full pass over a gzip file found: the decompressed bytes whose CRC-32 and length checked out."""

    verified_bytes: int  # decompressed bytes of the members before the first bad one
    reason: Optional[str] = None  # None (the whole file checked out), gzip_truncated or gzip_corrupt
    detail: str = ""


# Decompressed bytes produced per zlib call while verifying: output is discarded, so memory stays bounded
# whatever the compression ratio.
_VERIFY_OUTPUT_BYTES = 1 << 20


def verify_gzip(stream: BinaryIO, chunk_bytes: int = READ_CHUNK_BYTES) -> GzipCheck:
    """Decompresses every member of a gzip stream, discarding the text, and checks each member's CRC-32 and
    length (its trailer): text is used only once its checksum is known good (a member's CRC is checked only at
    its end, so a damaged member decompresses into text before the damage shows). Members are read as Python's
    gzip module reads them: zero padding after a member is allowed, anything else must be another member."""
    verified = 0
    member_out = 0
    inflater = None  # the current member's decompressor
    pending = b""  # compressed bytes not yet given to a decompressor
    eof = False
    while True:
        if inflater is None:
            if len(pending) < 2 and not eof:
                chunk = stream.read(chunk_bytes)
                eof = not chunk
                pending += chunk
                continue
            pending = pending.lstrip(b"\x00")
            if not pending:
                if eof:
                    return GzipCheck(verified)
                continue
            if not pending.startswith(GZIP_MAGIC[: len(pending)]) or (eof and len(pending) < 2):
                return GzipCheck(verified, "gzip_corrupt", "bytes after a member are not a gzip member")
            if len(pending) < 2:
                continue
            inflater, member_out = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
        if not pending:
            if not eof:
                pending = stream.read(chunk_bytes)
                eof = not pending
                continue
            while not inflater.eof:  # output zlib still holds for input it has taken in
                out = inflater.decompress(b"", _VERIFY_OUTPUT_BYTES)
                if not out:
                    return GzipCheck(verified, "gzip_truncated", "the stream ends inside a member")
                member_out += len(out)
            verified += member_out
            pending, inflater = inflater.unused_data, None
            continue
        try:
            member_out += len(inflater.decompress(pending, _VERIFY_OUTPUT_BYTES))
        except zlib.error as e:
            return GzipCheck(verified, "gzip_corrupt", str(e))
        pending = inflater.unconsumed_tail
        if inflater.eof:
            verified += member_out
            pending, inflater = inflater.unused_data, None


def _open_stream(opener: Callable[[str], BinaryIO], rng: InputRange) -> BinaryIO:
    try:
        raw = opener(rng.file.path)
    except (OSError, IOError) as e:
        raise InputError(f"{rng.file.path}: cannot be opened: {e}") from e
    if rng.file.is_gzip:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def iter_range_lines(rng: InputRange, opener: Callable[[str], BinaryIO], max_line_bytes: int
                     ) -> Iterator[Tuple[int, Optional[bytes], bool]]:
    """Yields (offset, line or None when too long, length in bytes, prev_blank_known) for lines starting at or
    after rng.start.

    The first yielded item tells via prev_blank_known whether the preceding line was blank (or the file
    start); later items carry True. Reading continues past rng.end; the caller stops. DamagedInput
    propagates from gzip streams.
    """
    stream = _open_stream(opener, rng)
    try:
        pos = rng.start
        at_doc_boundary = True
        if rng.start > 0:
            stream.seek(rng.start - 1)
            before = stream.read(2)
            aligned = before[:1] == b"\n" or (before[:1] == b"\r" and before[1:2] != b"\n")
            stream.seek(rng.start)
            if not aligned:
                # The tail of a line that starts in the previous range (or the LF of a CRLF).
                tail = read_lines(stream, max_line_bytes)
                skipped = next(tail, None)
                tail.close()
                if skipped is None:
                    return
                pos += skipped[1]
            at_doc_boundary = _previous_line_is_blank(stream, pos, max_line_bytes)
            stream.seek(pos)
        lines = read_lines(stream, max_line_bytes)
        first = True
        for line, length in lines:
            yield pos, line, length, (at_doc_boundary if first else True)
            first = False
            pos += length
    finally:
        stream.close()


def _check_gzip(rng: InputRange, opener: Callable[[str], BinaryIO], stats: ReadStats) -> Optional[int]:
    """For a gzip range, verifies the whole file first (verify_gzip) and returns how many decompressed bytes may
    be used, or None when all of it may; a damaged file is named in `stats` and in a warning."""
    if not rng.file.is_gzip:
        return None
    try:
        with opener(rng.file.path) as raw:
            check = verify_gzip(raw)
    except (OSError, IOError) as e:
        raise InputError(f"{rng.file.path}: cannot be read: {e}") from e
    if check.reason is None:
        return None
    stats.damaged_files[rng.file.key] = check.reason
    logging.warning("%s: %s (%s): only its first %d decompressed bytes pass their CRC-32 check; every document "
                    "with text past them is dropped and counted (documents_dropped.gzip_damaged); check the file "
                    "with `gzip -t`", rng.file.path, check.reason, check.detail, check.verified_bytes)
    return check.verified_bytes


def iter_documents(rng: InputRange, opener: Callable[[str], BinaryIO], input_format: str,
                   stats: ReadStats, max_line_bytes: Optional[int] = None) -> Iterator[RawDocument]:
    """Documents owned by the range: for bert/text, blank-line separated; for jsonl, one per line.

    Documents the reader cannot hand on whole are counted in `stats` (documents_dropped) instead. A gzip file
    is verified before it is read (its members' CRC-32): no text that fails or lacks its checksum is handed on.
    """
    path = rng.file.path
    limit = max_line_bytes or DEFAULT_MAX_LINE_BYTES.get(input_format, DEFAULT_MAX_LINE_BYTES["bert"])
    track_lines = rng.start == 0  # line numbers are known only when reading from the file start
    if track_lines:
        stats.files += 1
    verified_end = _check_gzip(rng, opener, stats)
    line_no = 0
    current: Optional[RawDocument] = None
    current_too_long = False
    skipping = False  # inside a document owned by an earlier range
    started = False

    def close(doc: RawDocument, too_long: bool, end: int) -> Optional[RawDocument]:
        """The document to hand on, or None when it is dropped (and counted); `end`: one past its last byte."""
        if verified_end is not None and end > verified_end:
            stats.drop("gzip_damaged", doc)
        elif too_long:
            stats.drop("line_too_long", doc)
        else:
            return doc
        return None

    lines = iter_range_lines(rng, opener, limit)
    end = rng.start  # one past the last byte read
    try:
        for offset, physical, length, prev_blank in lines:
            line_no += 1
            end = offset + length
            if not started:
                started = True
                skipping = not prev_blank and input_format != "jsonl"
            where = f"{path}:line {line_no}" if track_lines else f"{path}@byte {offset}"
            if physical is None:
                # Over the limit: neither held nor blank. Its document (owned here or not) is dropped.
                if skipping or (current is None and offset >= rng.end):
                    if skipping:
                        continue
                    return
                stats.lines_too_long += 1
                logging.warning("%s: line over %d bytes; its document is dropped (documents_dropped."
                                "line_too_long; raise --max_line_bytes to keep it)", where, limit)
                if input_format == "jsonl":
                    stats.lines += 1
                    close(RawDocument(key=f"{rng.file.key}@{offset}", lines=[""], source=where), True, end)
                    continue
                if current is None:
                    current = RawDocument(key=f"{rng.file.key}@{offset}", lines=[], source=where)
                stats.lines += 1
                current.lines.append("")
                current_too_long = True
                continue
            raw = strip_eol(physical)
            if offset == 0 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
                stats.bom_removed += 1
            invalid_before = stats.invalid_utf8_lines
            part = decode_line(raw, stats)
            invalid = stats.invalid_utf8_lines - invalid_before
            if is_blank(part):
                if current is not None:
                    done = close(current, current_too_long, end)  # its closing blank line verified too
                    if done is not None:
                        yield done
                    current, current_too_long = None, False
                skipping = False
                if offset >= rng.end:
                    return
                continue
            if skipping:
                continue
            if input_format == "jsonl":
                if offset >= rng.end:
                    return
                stats.lines += 1
                done = close(RawDocument(key=f"{rng.file.key}@{offset}", lines=[part.strip()], source=where,
                                         invalid_utf8_lines=invalid), False, end)
                if done is not None:
                    yield done
                continue
            if current is None:
                if offset >= rng.end:
                    return
                current = RawDocument(key=f"{rng.file.key}@{offset}", lines=[], source=where)
            stats.lines += 1
            current.lines.append(part.strip())
            current.invalid_utf8_lines += invalid
    except DamagedInput as e:
        if rng.file.key not in stats.damaged_files:  # damage the verification pass did not see (file changed?)
            stats.damaged_files[rng.file.key] = e.reason
            logging.warning("%s: %s after line %d (%s); the document in progress is dropped "
                            "(documents_dropped.gzip_damaged)", path, e.reason, line_no, e)
        if current is not None:
            stats.drop("gzip_damaged", current)
        return
    if track_lines and not started:
        stats.empty_files += 1
    if current is not None:
        done = close(current, current_too_long, end)
        if done is not None:
            yield done


MIN_BUCKET_DOCS = 16  # a bucket smaller than this is too small a random-next pool


def iter_buckets(docs: Iterator[RawDocument], max_docs: int, max_bytes: int,
                 min_docs: int = MIN_BUCKET_DOCS) -> Iterator[List[RawDocument]]:
    """Groups consecutive documents into buckets (the pool random-next documents are drawn from).

    A bucket closes at max_docs documents, or at max_bytes of text once it holds min_docs documents
    (so very long documents still get a pool to pair from). A short final bucket (under half of the
    limits) joins the previous one so no bucket is left with too few documents to pair from.
    """
    min_docs = min(min_docs, max_docs)
    pending: Optional[List[RawDocument]] = None
    current: List[RawDocument] = []
    size = 0
    for doc in docs:
        current.append(doc)
        size += sum(len(line) for line in doc.lines)
        if len(current) >= max_docs or (size >= max_bytes and len(current) >= min_docs):
            if pending is not None:
                yield pending
            pending, current, size = current, [], 0
    if pending is not None and current and (len(current) < min_docs or (
            len(current) < max_docs // 2 and size < max_bytes // 2)):
        pending.extend(current)
        current = []
    if pending is not None:
        yield pending
    if current:
        yield current


def local_opener(path: str) -> BinaryIO:
    return io.open(path, "rb")


def read_buckets(rng: InputRange, opener: Callable[[str], BinaryIO], input_format: str, bucket_docs: int,
                 bucket_bytes: int, counts: Dict[str, int], segmenter=None, text_field: str = "text",
                 id_field: Optional[str] = None, max_line_bytes: Optional[int] = None) -> Iterator[List[RawDocument]]:
    """Buckets of a range's documents, ready to tokenize (sentences a line). Once exhausted, `counts` holds
    what the reader saw and dropped (ReadStats.as_counts) plus the documents the parser dropped."""
    from transforms import input_formats  # pylint: disable=import-outside-toplevel
    stats = ReadStats()
    parsed: Dict[str, int] = collections.Counter()
    docs = iter_documents(rng, opener, input_format, stats, max_line_bytes)
    docs = input_formats.prepare_documents(docs, input_format, segmenter, parsed, text_field, id_field)
    yield from iter_buckets(docs, bucket_docs, bucket_bytes)
    total: Dict[str, int] = collections.Counter(parsed)
    total.update(stats.as_counts())
    for k, v in total.items():
        counts[k] = counts.get(k, 0) + v


def encode_input_list(files: Sequence[InputFile]) -> bytes:
    """The input files as JSON lines (for read_input_list): how thousands of inputs reach the workers
    without becoming thousands of elements in the job graph."""
    import json  # pylint: disable=import-outside-toplevel
    return "".join(json.dumps(dataclasses.asdict(f), sort_keys=True) + "\n" for f in files).encode("utf-8")


def read_input_list(path: str, opener: Callable[[str], BinaryIO]) -> Iterator[InputFile]:
    """The InputFiles encode_input_list wrote to `path`."""
    import json  # pylint: disable=import-outside-toplevel
    with opener(path) as f:
        data = f.read().decode("utf-8")
    for line in data.splitlines():
        if line.strip():
            yield InputFile(**json.loads(line))
