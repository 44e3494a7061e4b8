"""Beam PTransforms wiring the pure build functions: ranges -> runs -> shards -> manifest."""
import collections
import dataclasses
import json
import logging
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import progress, runtime_env
from transforms import bucket_builder, corpus_reader, fileio, keys, spill
from transforms.bucket_builder import BuildConfig, VocabInfo
from transforms.corpus_reader import InputRange
from transforms.tfrecord_io import TFRecordWriter
from transforms.tokenizer_factory import TokenizerSpec, load_tokenizer

NAMESPACE = "bertbeam"
TMP_DIRNAME = "_bertbeam_tmp"
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """Everything the pipeline needs; picklable, shipped to workers."""

    cfg: BuildConfig
    tokenizer: TokenizerSpec
    output_dir: str
    input_format: str = "bert"
    text_field: str = "text"
    id_field: Optional[str] = None
    lang: Optional[str] = None
    bucket_docs: int = 1000
    bucket_bytes: int = 1 << 20
    compression: Optional[str] = None
    max_line_bytes: Optional[int] = None  # None: the input format's default

    @property
    def tmp_dir(self) -> str:
        return fileio.join(self.output_dir, TMP_DIRNAME)

    def shard_name(self, index: int) -> str:
        suffix = ".tfrecord.gz" if self.compression == "gzip" else ".tfrecord"
        return f"train-{index:05d}-of-{self.cfg.num_shards:05d}{suffix}"


def _sum_counts(dicts: Iterable[Dict[str, int]]) -> Dict[str, int]:
    total: Dict[str, int] = collections.Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


class _BuildRunsFn(beam.DoFn):
    """Reads a range's documents once, in buckets, and writes one sorted run file per bucket and plan.

    Several plans (e.g. seq 128 and seq 512) share the reading, segmentation and tokenization of a
    bucket; only instance building, masking and encoding run once per plan.
    """

    def __init__(self, plans: Sequence[BuildPlan]):
        self._plans = tuple(plans)
        self._plan = self._plans[0]  # reading settings are common to all plans
        self._docs_read = Metrics.counter(NAMESPACE, "documents_read")
        self._docs_used = Metrics.counter(NAMESPACE, "documents_used")
        self._docs_dropped = Metrics.counter(NAMESPACE, "documents_dropped")
        self._instances = Metrics.counter(NAMESPACE, "instances_built")
        self._buckets = Metrics.counter(NAMESPACE, "buckets")
        self._bytes_read = Metrics.counter(NAMESPACE, "input_bytes_read")
        self._stage_ms = {name: Metrics.counter(NAMESPACE, f"cpu_ms_{name}") for name in progress.STAGES}
        self._startup_ms = Metrics.distribution(NAMESPACE, "worker_startup_cpu_ms")
        self._clock = progress.StageClock()
        self._recorder = progress.Recorder("")  # replaced in setup()
        self._bucket_instances = 0
        self._tokenizer = None
        self._vocab: Optional[VocabInfo] = None
        self._segmenter = None

    def setup(self):
        self._recorder = progress.Recorder()  # after unpickling: the folder comes from this process's env
        self._tokenizer = load_tokenizer(self._plan.tokenizer)
        self._vocab = VocabInfo.from_vocab(self._tokenizer.vocab)
        if self._plan.input_format in ("text", "jsonl"):
            from transforms.segment import Segmenter  # pylint: disable=import-outside-toplevel
            self._segmenter = Segmenter(self._plan.lang or "generic")
        runtime_env.prepare_worker()  # thread pools; the collector skips the objects loaded so far

    def process(self, rng: InputRange) -> Iterable[Dict[str, Any]]:
        startup = self._recorder.first_document()
        if startup is not None:
            self._startup_ms.update(int(startup * 1000))
        plan = self._plan
        stats = corpus_reader.ReadStats()
        read_counts: Dict[str, int] = collections.Counter()
        docs = corpus_reader.iter_documents(rng, fileio.open_read, plan.input_format, stats, plan.max_line_bytes)
        docs = self._prepare_documents(docs, read_counts)
        clock, started, reported = self._clock, time.thread_time(), 0
        for bucket in corpus_reader.iter_buckets(docs, plan.bucket_docs, plan.bucket_bytes):
            clock.add("read", time.thread_time() - started)
            # Tokenize once; every plan (sequence length) builds from the same tokens.
            token_counts: Dict[str, int] = collections.Counter()
            with clock("tokenize"):
                docs_tokens = bucket_builder.tokenize_documents(bucket, self._tokenizer.tokenize_lines,
                                                                self._vocab.unk_id, token_counts)
            self._buckets.inc()
            self._docs_read.inc(token_counts.get("documents_read", 0))
            self._docs_used.inc(token_counts.get("documents_used", 0))
            self._docs_dropped.inc(sum(v for k, v in token_counts.items() if k.startswith("documents_dropped.")))
            self._bucket_instances = 0
            for index in range(len(self._plans)):
                yield self._write_run(index, bucket[0].key, docs_tokens, collections.Counter(token_counts))
            reported = self._report(rng, bucket[-1].key, len(bucket), reported)
            started = time.thread_time()
        clock.add("read", time.thread_time() - started)
        self._report(rng, None, 0, reported)
        # Reader counters (and drops made while parsing) are complete once the documents are consumed.
        tail: Dict[str, int] = collections.Counter(read_counts)
        tail.update(stats.as_counts())  # lines, encoding fixes, documents the reader dropped, damaged files
        for index in range(len(self._plans)):
            yield {"plan": index, "run": None, "segments": {}, "counts": dict(tail)}

    def _report(self, rng: InputRange, last_key: Optional[str], documents: int, reported: int) -> int:
        """Progress after a bucket (last_key: its last document) or at the end of the range (None):
        Beam counters, and a record for the local progress line. Returns the range's bytes reported."""
        size = rng.file.size if rng.file.is_gzip else min(rng.end, rng.file.size) - rng.start
        if last_key is None:
            position = size
        elif rng.file.is_gzip:  # offsets are in decompressed bytes: report gzip files when done
            position = reported
        else:
            position = min(size, int(last_key.rsplit("@", 1)[1]) - rng.start)
        stages = self._clock.take()
        self._bytes_read.inc(max(0, position - reported))
        for name, seconds in stages.items():
            self._stage_ms[name].inc(int(seconds * 1000))
        self._recorder.record(f"{rng.file.key}@{rng.start}", position, documents,
                              self._bucket_instances if last_key is not None else 0, stages)
        return max(position, reported)

    def _prepare_documents(self, docs, read_counts):
        """Turns raw documents into sentence lists for the configured input format, counting drops."""
        if self._plan.input_format == "bert":
            yield from docs
            return
        from transforms import input_formats  # pylint: disable=import-outside-toplevel
        for doc in docs:
            if self._plan.input_format == "jsonl":
                try:
                    doc_id, paragraphs = input_formats.parse_jsonl_line(doc.lines[0], self._plan.text_field,
                                                                         self._plan.id_field)
                except input_formats.InputFormatError as e:
                    read_counts["documents_read"] += 1
                    read_counts["documents_dropped.bad_jsonl"] += 1
                    self._docs_read.inc()
                    self._docs_dropped.inc()
                    logging.warning("%s: dropped: %s", doc.source, e)
                    continue
                doc.doc_id = doc_id
            else:
                paragraphs = input_formats.paragraphs_from_text_lines(doc.lines)
            doc.lines = input_formats.sentences_for_document(paragraphs, self._segmenter)
            yield doc

    def _write_run(self, index: int, bucket_key: str, docs_tokens, counts: Dict[str, int]) -> Dict[str, Any]:
        plan = self._plans[index]
        with self._clock("build_instances"):
            result = bucket_builder.build_tokenized_bucket(docs_tokens, plan.cfg, self._vocab, counts)
        self._instances.inc(len(result.records))
        self._bucket_instances += len(result.records)
        if not result.records:
            return {"plan": index, "run": None, "segments": {}, "counts": result.counts}
        with self._clock("spill"):
            data, shard_index = spill.encode_run(result.shard_ids, result.keys, result.records)
            # The run's name derives from its first document's key: a re-run bundle rewrites the same file.
            run_path = fileio.join(plan.tmp_dir, f"run-{keys.seed64(bucket_key):016x}.bin")
            fileio.write_atomic(run_path, data)
        return {"plan": index, "run": run_path, "segments": shard_index, "counts": result.counts}


def _segments_by_shard(run: Dict[str, Any]) -> Iterable[Tuple[int, Tuple[str, int, int, int]]]:
    for shard, (offset, length, count) in run["segments"].items():
        yield int(shard), (run["run"], offset, length, count)


class _WriteShardFn(beam.DoFn):
    """Merges a shard's slices of every run, in key order, into its final TFRecord file."""

    def __init__(self, plan: BuildPlan):
        self._plan = plan
        self._written = Metrics.counter(NAMESPACE, "instances_written")
        self._ms = Metrics.counter(NAMESPACE, "cpu_ms_write_shards")
        self._recorder = progress.Recorder("")  # replaced in setup()

    def setup(self):
        self._recorder = progress.Recorder()

    def process(self, element) -> Iterable[Dict[str, Any]]:
        started = time.thread_time()
        written = self._write(element)
        seconds = time.thread_time() - started
        self._ms.inc(int(seconds * 1000))
        self._recorder.record(stages={"write_shards": seconds}, shards=1)
        yield written

    def _write(self, element) -> Dict[str, Any]:
        shard, segments = element
        segments = sorted(s for s in segments if s is not None)
        path = fileio.join(self._plan.output_dir, self._plan.shard_name(shard))
        stream, tmp = fileio.create_temp_for(path)
        writer = TFRecordWriter(stream, self._plan.compression)
        for record in spill.merge_segments(fileio.open_read, segments):
            writer.write(record)
        writer.close()
        fileio.commit_temp(tmp, path)
        expected = sum(s[3] for s in segments)
        if writer.count != expected:
            raise RuntimeError(f"{path}: wrote {writer.count} records, runs held {expected}")
        self._written.inc(writer.count)
        size = _file_size(path)
        return {"shard": shard, "path": self._plan.shard_name(shard), "num_instances": writer.count, "bytes": size}


def _file_size(path: str) -> int:
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


class _WriteManifestFn(beam.DoFn):
    """Writes manifest.json (atomically) and the _SUCCESS marker, after removing the temporary runs."""

    def __init__(self, plan: BuildPlan, manifest_base: Dict[str, Any], started_at: float):
        self._plan = plan
        self._base = manifest_base
        self._started_at = started_at

    def process(self, _, counts: Dict[str, int], shards: List[Dict[str, Any]]):
        from pipeline.manifest import make_manifest  # pylint: disable=import-outside-toplevel
        fileio.delete_tree(self._plan.tmp_dir)
        manifest = make_manifest(self._base, counts, shards, time.time() - self._started_at)
        out = self._plan.output_dir
        fileio.write_atomic(fileio.join(out, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())
        fileio.write_atomic(fileio.join(out, SUCCESS), b"")
        yield manifest


class BuildPretrainingData(beam.PTransform):
    """Input ranges -> shard files + manifest.json per plan; outputs the manifest dicts.

    Several plans share one read: each gets its own output folder, shards and manifest.
    """

    def __init__(self, plans, manifest_bases, started_at: float):
        super().__init__()
        self._plans = tuple(plans) if isinstance(plans, (list, tuple)) else (plans,)
        self._bases = tuple(manifest_bases) if isinstance(manifest_bases, (list, tuple)) else (manifest_bases,)
        self._started_at = started_at

    def expand(self, ranges):
        runs = (ranges
                | "DistributeRanges" >> beam.Reshuffle()
                | "BuildInstanceRuns" >> beam.ParDo(_BuildRunsFn(self._plans)))
        per_plan = runs | "SplitByPlan" >> beam.Partition(lambda run, n: run["plan"], len(self._plans))
        manifests = []
        for index, (plan, base) in enumerate(zip(self._plans, self._bases)):
            tag = f"seq{plan.cfg.max_seq_length}" if len(self._plans) > 1 else "out"
            manifests.append(per_plan[index] | f"WriteDataset[{tag}]" >> _WriteDataset(plan, base, self._started_at))
        if len(manifests) == 1:
            return manifests[0]
        return manifests | "AllManifests" >> beam.Flatten()


class _WriteDataset(beam.PTransform):
    """One plan's runs -> its shards and manifest."""

    def __init__(self, plan: BuildPlan, base: Dict[str, Any], started_at: float):
        super().__init__()
        self._plan = plan
        self._base = base
        self._started_at = started_at

    def expand(self, runs):
        plan = self._plan
        p = runs.pipeline
        counts = (runs
                  | "ExtractCounts" >> beam.Map(lambda run: run["counts"])
                  | "SumCounts" >> beam.CombineGlobally(_sum_counts))
        every_shard = (p
                       | "ShardIndices" >> beam.Create(list(range(plan.cfg.num_shards)))
                       | "NoSegment" >> beam.Map(lambda shard: (shard, None)))
        segments = runs | "SegmentsByShard" >> beam.FlatMap(_segments_by_shard)
        shards = ((segments, every_shard)
                  | "AllShards" >> beam.Flatten()
                  | "GroupSegments" >> beam.GroupByKey()
                  | "WriteShards" >> beam.ParDo(_WriteShardFn(plan)))
        return (p
                | "ManifestTrigger" >> beam.Create([None])
                | "WriteManifest" >> beam.ParDo(_WriteManifestFn(plan, self._base, self._started_at),
                                                beam.pvalue.AsSingleton(counts), beam.pvalue.AsList(shards)))
