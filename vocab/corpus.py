"""Training text for vocabularies: expand input globs (local or gs://) and stream sentences per input format."""
import functools
import glob
import json
import os
import posixpath
from typing import Iterator, List, Optional, Sequence, Tuple

INPUT_FORMATS = ("bert", "text", "jsonl")


class CorpusError(ValueError):
    """Input files cannot be found or parsed; the message names the file (and line)."""


def expand_inputs(input_file: str) -> List[str]:
    """Comma-separated files/globs -> sorted, de-duplicated paths; a pattern matching nothing is an error."""
    paths: List[str] = []
    for pattern in [p.strip() for p in input_file.split(",") if p.strip()]:
        if "://" in pattern:
            from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
            matched = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
        else:
            matched = [p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p)]
        if not matched:
            raise CorpusError(f"--input_file pattern {pattern!r} matches no file")
        paths.extend(matched)
    if not paths:
        raise CorpusError("--input_file is empty")
    return sorted(set(paths))


def common_root(paths: Sequence[str]) -> str:
    """Deepest folder containing every path; keys are relative to it so they survive moving the corpus."""
    dirs = [posixpath.dirname(p) if "://" in p else os.path.dirname(os.path.abspath(p)) for p in paths]
    if len(dirs) == 1:
        return dirs[0]
    if any("://" in d for d in dirs):
        prefix = os.path.commonprefix(dirs)
        return prefix[: prefix.rfind("/")] if not prefix.endswith("/") else prefix.rstrip("/")
    return os.path.commonpath(dirs)


def relative_key(path: str, root: str) -> str:
    if "://" in path:
        return path[len(root):].lstrip("/")
    return os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")


def _iter_lines(path: str, chunk_size: int = 1 << 20) -> Iterator[str]:
    """Lines of a local or gs:// file (.gz/.bz2 decompressed by extension), invalid UTF-8 replaced."""
    # Beam's FileSystems reads every scheme; its CompressedFile is not an io.BufferedIOBase, so split here.
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    with FileSystems.open(path) as f:
        pending = b""
        while True:
            chunk = f.read(chunk_size)
            if not chunk:
                break
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield line.decode("utf-8", errors="replace")
        if pending:
            yield pending.decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=None)
def _segmenter(lang: str):
    from transforms.segment import Segmenter  # pylint: disable=import-outside-toplevel
    return Segmenter(lang)


def sentences_from_line(line: str, input_format: str, text_field: str = "text",
                        where: str = "<input>", lang: Optional[str] = None) -> List[str]:
    """The training sentences one raw input line contributes (none for blank lines).

    With `lang`, text/jsonl paragraphs are split into sentences by that language's segmenter (a
    paragraph can be a whole book, longer than SentencePiece accepts as one sentence); bert-format
    lines are sentences already.
    """
    line = line.lstrip("\ufeff").rstrip("\r\n")
    if input_format == "bert" or (input_format == "text" and not lang):
        # bert: a sentence a line; text: a paragraph a line. Either way one training "sentence".
        line = line.strip()
        return [line] if line else []
    if input_format == "text":
        return _segmenter(lang).split(line)
    if input_format == "jsonl":
        if not line.strip():
            return []
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{where}: invalid JSON ({e.msg})") from e
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise CorpusError(f"{where}: no string field {text_field!r} (use --text_field)")
        paragraphs = [p.strip() for p in text.split("\n") if p.strip()]
        if lang:
            split = _segmenter(lang).split
            return [s for p in paragraphs for s in split(p)]
        return paragraphs
    raise CorpusError(f"unknown --input_format {input_format!r} (choose from {', '.join(INPUT_FORMATS)})")


def iter_sentences(paths: Sequence[str], input_format: str = "bert", text_field: str = "text",
                   lang: Optional[str] = None) -> Iterator[str]:
    """Streams every training sentence of every file, in path order (bounded memory)."""
    for path in paths:
        for lineno, line in enumerate(_iter_lines(path), start=1):
            yield from sentences_from_line(line, input_format, text_field, where=f"{path}:{lineno}", lang=lang)


def iter_keyed_sentences(paths: Sequence[str], input_format: str = "bert",
                         text_field: str = "text") -> Iterator[Tuple[str, str]]:
    """(file key relative to the common root, sentence) pairs; the key feeds the deterministic sample."""
    root = common_root(paths)
    for path in paths:
        key = relative_key(path, root)
        for sentence in iter_sentences([path], input_format, text_field):
            yield key, sentence
