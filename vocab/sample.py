"""Deterministic sentence sample for vocabulary training: the N smallest blake2b keys, drawn by Beam."""
import hashlib
import heapq
from typing import Iterable, List, Optional, Sequence, Tuple


def sample_key(seed: int, file_key: str, sentence: str) -> bytes:
    """Order key of a sentence: blake2b over (seed, file relative to the inputs' root, sentence).

    Independent of arrival order, worker count and absolute paths, so the sample is reproducible.
    Identical sentences in one file share a key (and are both kept or both dropped).
    """
    h = hashlib.blake2b(digest_size=8, person=b"bbvocab")
    h.update(str(int(seed)).encode("ascii") + b"\0" + file_key.encode("utf-8") + b"\0" + sentence.encode("utf-8"))
    return h.digest()


def smallest_n(keyed: Iterable[Tuple[str, str]], n: int, seed: int) -> List[str]:
    """In-process reference of the Beam sample: the n sentences with the smallest keys, in key order."""
    best = heapq.nsmallest(n, ((sample_key(seed, k, s), s) for k, s in keyed))
    return [s for _, s in best]


def _write_sample(items: List[Tuple[bytes, str]], path: str) -> int:
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    items = sorted(items)  # key order, so the file (and the trainer's input) is byte-identical across runs
    with FileSystems.create(path) as f:
        for _, sentence in items:
            f.write(sentence.encode("utf-8") + b"\n")
    return len(items)


def _lenient_utf8_coder():
    import apache_beam as beam  # pylint: disable=import-outside-toplevel

    class LenientUtf8Coder(beam.coders.Coder):
        """Invalid UTF-8 becomes U+FFFD (dropped later by cleaning) instead of failing the job."""

        def encode(self, value):
            return value.encode("utf-8")

        def decode(self, value):
            return value.decode("utf-8", errors="replace")

        def is_deterministic(self):
            return True

    return LenientUtf8Coder()


def run_sample_pipeline(paths: Sequence[str], n: int, out_path: str, seed: int = 12345,
                        input_format: str = "bert", text_field: str = "text",
                        pipeline_args: Optional[Sequence[str]] = None, lang: Optional[str] = None) -> None:
    """Reads all inputs with Beam (splittable, gs:// and .gz aware) and writes the N-sentence sample."""
    # pylint: disable=import-outside-toplevel
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from vocab.corpus import common_root, relative_key, sentences_from_line

    root = common_root(paths)

    def keyed(element: Tuple[str, str]):
        path, line = element
        file_key = relative_key(path, root)
        for sentence in sentences_from_line(line, input_format, text_field, where=path, lang=lang):
            yield sample_key(seed, file_key, sentence), sentence

    options = PipelineOptions(list(pipeline_args or []))
    with beam.Pipeline(options=options) as p:
        _ = (p
             | "Files" >> beam.Create(sorted(paths))
             | "Read" >> beam.io.ReadAllFromText(with_filename=True, coder=_lenient_utf8_coder())
             | "Key" >> beam.FlatMap(keyed)
             # Top keeps at most n elements per worker and per merge: memory bounded by n, not corpus size.
             | "SmallestN" >> beam.combiners.Top.Smallest(n)
             | "Write" >> beam.Map(_write_sample, out_path))
