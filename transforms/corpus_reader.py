"""Reading corpora as whole documents from byte ranges of files (local or gs://, gzip), pure Python.

A file is cut into byte ranges so that a 100 MB+ file is never one element. A range owns the
documents whose first line starts inside it; it reads a document it owns to the end even past the
range end, and skips the tail of a document that began in an earlier range. Every range therefore
decides document boundaries from the bytes alone, so any split gives the same documents.
"""
import dataclasses
import gzip
import io
import os
import zlib
from typing import BinaryIO, Callable, Iterator, List, Optional, Sequence, Tuple

GZIP_MAGIC = b"\x1f\x8b"
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


@dataclasses.dataclass
class ReadStats:
    lines: int = 0  # non-blank lines in documents owned by the range
    invalid_utf8_lines: int = 0  # lines with bytes that are not UTF-8 (replaced by U+FFFD)
    bom_removed: int = 0


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


def decode_line(raw: bytes, stats: ReadStats) -> str:
    """UTF-8 decoding; invalid bytes become U+FFFD (removed later by tokenizer cleaning) and are counted."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_lines += 1
        return raw.decode("utf-8", errors="replace")


def logical_lines(physical: bytes, stats: ReadStats) -> List[str]:
    """A physical line (ending in \\n) as logical lines: CRLF and lone CR line ends both end a line."""
    if physical.endswith(b"\n"):
        physical = physical[:-1]
    if physical.endswith(b"\r"):
        physical = physical[:-1]
    text = decode_line(physical, stats)
    if "\r" in text:
        return text.split("\r")
    return [text]


def is_blank(line: str) -> bool:
    """The reference's document separator: a line that is empty after str.strip()."""
    return not line.strip()


def _previous_line_is_blank(f: BinaryIO, pos: int) -> bool:
    """Whether the last logical line before byte `pos` (a line start > 0) is blank.

    Scans backwards and stops early at a printable ASCII byte, so it stays cheap even after long lines.
    """
    end = pos - 1  # f[end] is the '\n' ending the previous physical line
    if end > 0:
        f.seek(end - 1)
        if f.read(1) == b"\r":
            end -= 1
    collected = bytearray()
    cursor = end
    block = 256
    while cursor > 0:
        start = max(0, cursor - block)
        f.seek(start)
        chunk = f.read(cursor - start)
        for i in range(len(chunk) - 1, -1, -1):
            b = chunk[i]
            if b in (0x0A, 0x0D):
                return is_blank(bytes(reversed(collected)).decode("utf-8", errors="replace"))
            if 0x21 <= b <= 0x7E:
                return False
            collected.append(b)
        cursor = start
        block = min(block * 4, 1 << 20)
    return is_blank(bytes(reversed(collected)).decode("utf-8", errors="replace"))


def _open_stream(opener: Callable[[str], BinaryIO], rng: InputRange) -> BinaryIO:
    raw = opener(rng.file.path)
    if rng.file.is_gzip:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def iter_physical_lines(rng: InputRange, opener: Callable[[str], BinaryIO]
                        ) -> Iterator[Tuple[int, bytes, bool]]:
    """Yields (offset, physical line, prev_blank_known) for lines starting at or after the range start.

    The first yielded item tells via prev_blank_known whether the preceding line was blank (or the file
    start); later items carry True. Reading continues past rng.end; the caller stops.
    """
    stream = _open_stream(opener, rng)
    try:
        pos = rng.start
        at_doc_boundary = True
        if rng.start > 0:
            stream.seek(rng.start - 1)
            if stream.read(1) != b"\n":
                stream.readline()  # the tail of a line that starts in the previous range
            pos = stream.tell()
            at_doc_boundary = _previous_line_is_blank(stream, pos)
            stream.seek(pos)
        first = True
        while True:
            try:
                line = stream.readline()
            except (EOFError, zlib.error, gzip.BadGzipFile) as e:
                raise InputError(f"{rng.file.path}: corrupt or truncated gzip data near byte {pos} ({e})") from e
            if not line:
                return
            yield pos, line, (at_doc_boundary if first else True)
            first = False
            pos += len(line)
    finally:
        stream.close()


def iter_documents(rng: InputRange, opener: Callable[[str], BinaryIO], input_format: str,
                   stats: ReadStats) -> Iterator[RawDocument]:
    """Documents owned by the range: for bert/text, blank-line separated; for jsonl, one per line."""
    path = rng.file.path
    track_lines = rng.start == 0  # line numbers are known only when reading from the file start
    line_no = 0
    current: Optional[RawDocument] = None
    skipping = False  # inside a document owned by an earlier range
    started = False
    for offset, physical, prev_blank in iter_physical_lines(rng, opener):
        line_no += 1
        if not started:
            started = True
            skipping = not prev_blank and input_format != "jsonl"
        parts = logical_lines(physical, stats)
        if offset == 0 and parts and parts[0].startswith("\ufeff"):
            parts[0] = parts[0][1:]
            stats.bom_removed += 1
        for part in parts:
            if is_blank(part):
                if current is not None:
                    yield current
                    current = None
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
                where = f"{path}:line {line_no}" if track_lines else f"{path}@byte {offset}"
                yield RawDocument(key=f"{rng.file.key}@{offset}", lines=[part.strip()], source=where)
                continue
            if current is None:
                if offset >= rng.end:
                    return
                where = f"{path}:line {line_no}" if track_lines else f"{path}@byte {offset}"
                current = RawDocument(key=f"{rng.file.key}@{offset}", lines=[], source=where)
            stats.lines += 1
            current.lines.append(part.strip())
    if current is not None:
        yield current


def iter_buckets(docs: Iterator[RawDocument], max_docs: int, max_bytes: int) -> Iterator[List[RawDocument]]:
    """Groups consecutive documents into buckets (the pool random-next documents are drawn from).

    A bucket closes at max_docs documents or max_bytes of text. A short final bucket (under half of
    max_docs) joins the previous one so no bucket is left with too few documents to pair from.
    """
    pending: Optional[List[RawDocument]] = None
    current: List[RawDocument] = []
    size = 0
    for doc in docs:
        current.append(doc)
        size += sum(len(line) for line in doc.lines)
        if len(current) >= max_docs or size >= max_bytes:
            if pending is not None:
                yield pending
            pending, current, size = current, [], 0
    if pending is not None and current and len(current) < max_docs // 2 and size < max_bytes // 2:
        pending.extend(current)
        current = []
    if pending is not None:
        yield pending
    if current:
        yield current


def local_opener(path: str) -> BinaryIO:
    return io.open(path, "rb")
