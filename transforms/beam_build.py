"""Beam PTransforms wiring the pure build functions: ranges -> buckets -> shard slices -> shards -> manifest.

One graph for every runner, with no side inputs, no multi-output ParDo and no per-plan Partition (a
runner that drops output tags or re-executes side-input producers, as Beam's DaskRunner does, still
builds correct data): slices are keyed by (plan, shard) and grouped by one GroupByKey; counts and shard
results are keyed by plan and grouped by one more, which writes each plan's manifest.

Two shuffle paths carry the slices (`--shuffle`): `local_files` writes one key-sorted run file per bucket
and moves only (file, offset) references through the GroupByKey (flat memory on the local DirectRunner,
which holds grouped data in memory); `runner` moves the framed records themselves through the runner's
GroupByKey (Dataflow Shuffle, Flink/Spark/Dask shuffle): no intermediate files, and the buckets a range
yields are redistributed before instance building, so building spreads over workers even for one big
gzip file (where the runner's GroupByKey spreads keys, as Dataflow's does; Beam's DaskRunner keeps the
partition count). Both give the same bytes (spill.py).
"""
import collections
import dataclasses
import json
import threading
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

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
SHUFFLE_MODES = ("local_files", "runner")


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


_TOKENIZERS: Dict[TokenizerSpec, Tuple[Any, VocabInfo]] = {}
_TOKENIZERS_LOCK = threading.Lock()


def _shared_tokenizer(spec: TokenizerSpec, loaded: Any = None) -> Tuple[Any, VocabInfo]:
    """One tokenizer and its VocabInfo per worker process (`loaded`, or loaded here, the first time): runners
    that call DoFn.setup per bundle (Beam's DaskRunner does, per partition) would otherwise rebuild them for
    every bundle."""
    with _TOKENIZERS_LOCK:
        if spec not in _TOKENIZERS:
            tokenizer = loaded if loaded is not None else load_tokenizer(spec)
            _TOKENIZERS[spec] = (tokenizer, VocabInfo.from_vocab(tokenizer.vocab))
        return _TOKENIZERS[spec]


def preload_tokenizer(spec: TokenizerSpec, tokenizer) -> None:
    """Makes an already loaded tokenizer (and its VocabInfo, ~15 ms for 30k entries) this process's shared one,
    its lazily built models built now: a fork server's workers inherit all of it instead of each building it."""
    shared, _ = _shared_tokenizer(spec, tokenizer)
    load_models = getattr(shared, "load_models", None)  # WordPiece's Rust model (~10 ms), built once here
    if load_models is not None:
        load_models()


def _segmenter_for(plan: BuildPlan):
    if plan.input_format in ("text", "jsonl"):
        from transforms.segment import Segmenter  # pylint: disable=import-outside-toplevel
        return Segmenter(plan.lang or "generic")
    return None


# Elements between the stages are plain tuples (picklable with any coder):
#   ("bucket", sort key, [RawDocument])    a bucket to build (runner path, before redistribution)
#   ("counts", None, {name: n})            reader counts of one range, for every plan
#   ("slice", (plan, shard), payload)      a bucket's records for one shard: framed bytes (runner path) or
#                                          a run-file segment (path, offset, length, count) (local files)
#   ("counts", plan, {name: n})            a bucket's counts for one plan


class _Progress:
    """A worker's progress figures: Beam counters with readable names (what the Dataflow console shows) and,
    on a local run, records for the launcher's progress line (pipeline/progress.py). Never changes output."""

    def __init__(self, topic: Optional[str] = None):
        self._topic = topic  # a Dask event topic for the records (a Dask cluster's workers have no local folder)
        self._bytes_read = Metrics.counter(NAMESPACE, "input_bytes_read")
        self._stage_ms = {name: Metrics.counter(NAMESPACE, f"cpu_ms_{name}") for name in progress.STAGES}
        self._startup_ms = Metrics.distribution(NAMESPACE, "worker_startup_cpu_ms")
        self.clock = progress.StageClock()
        self._recorder = progress.Recorder("")  # replaced in setup(): the folder comes from the worker's env

    def setup(self) -> None:
        self._recorder = progress.Recorder(topic=self._topic)
        runtime_env.prepare_worker()  # thread pools; the collector skips the objects loaded so far

    def timed_read(self, buckets: Iterable[Any]) -> Iterator[Any]:
        """The buckets, unchanged, with the CPU time spent producing each (reading, parsing) added to "read"."""
        started = time.thread_time()
        for bucket in buckets:
            self.clock.add("read", time.thread_time() - started)
            yield bucket
            started = time.thread_time()
        self.clock.add("read", time.thread_time() - started)

    def first_document(self) -> None:
        startup = self._recorder.first_document()
        if startup is not None:
            self._startup_ms.update(int(startup * 1000))

    def report(self, rng: Optional[InputRange] = None, last_key: Optional[str] = None, documents: int = 0,
               instances: int = 0, reported: int = 0, shards: int = 0) -> int:
        """After a bucket (last_key: its last document), at the end of a range (rng without last_key) or of a
        stage that reads nothing (no rng): counters and a progress record. Returns the range's bytes reported."""
        stages = self.clock.take()
        for name, seconds in stages.items():
            self._stage_ms[name].inc(int(seconds * 1000))
        if rng is None:
            self._recorder.record(instances=instances, stages=stages, shards=shards)
            return reported
        size = rng.file.size if rng.file.is_gzip else min(rng.end, rng.file.size) - rng.start
        if last_key is None:
            position = size
        elif rng.file.is_gzip:  # offsets are in decompressed bytes: a gzip file counts when it is done
            position = reported
        else:
            position = min(size, int(last_key.rsplit("@", 1)[1]) - rng.start)
        self._bytes_read.inc(max(0, position - reported))
        self._recorder.record(f"{rng.file.key}@{rng.start}", position, documents, instances, stages)
        return max(position, reported)


class _BucketBuilder:
    """Tokenizes a bucket once and builds it for every plan (shared by both shuffle paths' DoFns)."""

    def __init__(self, plans: Sequence[BuildPlan], progress_topic: Optional[str] = None):
        self.plans = tuple(plans)
        self.tokenizer = None
        self.vocab: Optional[VocabInfo] = None
        self._docs_read = Metrics.counter(NAMESPACE, "documents_read")
        self._docs_used = Metrics.counter(NAMESPACE, "documents_used")
        self._docs_dropped = Metrics.counter(NAMESPACE, "documents_dropped")
        self._instances = Metrics.counter(NAMESPACE, "instances_built")
        self._buckets = Metrics.counter(NAMESPACE, "buckets")
        self.progress = _Progress(progress_topic)

    def setup(self) -> None:
        self.tokenizer, self.vocab = _shared_tokenizer(self.plans[0].tokenizer)
        self.progress.setup()

    def build(self, bucket) -> Iterable[Tuple[int, bucket_builder.BucketResult]]:
        """(plan index, result) for every plan; tokenization is shared by all plans."""
        token_counts: Dict[str, int] = collections.Counter()
        clock = self.progress.clock
        with clock("tokenize"):
            docs_tokens = bucket_builder.tokenize_documents(bucket, self.tokenizer.tokenize_lines, self.vocab.unk_id,
                                                            token_counts)
        self._buckets.inc()
        self._docs_read.inc(token_counts.get("documents_read", 0))
        self._docs_used.inc(token_counts.get("documents_used", 0))
        self._docs_dropped.inc(sum(v for k, v in token_counts.items() if k.startswith("documents_dropped.")))
        for index, plan in enumerate(self.plans):
            with clock("build_instances"):
                result = bucket_builder.build_tokenized_bucket(docs_tokens, plan.cfg, self.vocab,
                                                               collections.Counter(token_counts))
            self._instances.inc(len(result.records))
            yield index, result

    def count_reader_drops(self, counts: Dict[str, int]) -> None:
        dropped = counts.get("documents_dropped.bad_jsonl", 0)
        if dropped:
            self._docs_read.inc(dropped)
            self._docs_dropped.inc(dropped)


def _read_range(plan: BuildPlan, segmenter, rng: InputRange, counts: Dict[str, int]):
    return corpus_reader.read_buckets(rng, fileio.open_read, plan.input_format, plan.bucket_docs, plan.bucket_bytes,
                                      counts, segmenter, plan.text_field, plan.id_field, plan.max_line_bytes)


class _BuildRunsFn(beam.DoFn):
    """Local-files path: reads a range's buckets, builds each for every plan and writes one sorted run file per
    bucket and plan; outputs segment references and counts (never the records)."""

    def __init__(self, plans: Sequence[BuildPlan], progress_topic: Optional[str] = None):
        self._plans = tuple(plans)
        self._builder = _BucketBuilder(plans, progress_topic)
        self._segmenter = None

    def setup(self):
        self._builder.setup()
        self._segmenter = _segmenter_for(self._plans[0])

    def process(self, rng: InputRange) -> Iterable[Tuple[str, Any, Any]]:
        watch = self._builder.progress
        watch.first_document()
        read_counts: Dict[str, int] = {}
        reported = 0
        for bucket in watch.timed_read(_read_range(self._plans[0], self._segmenter, rng, read_counts)):
            instances = 0
            for index, result in self._builder.build(bucket):
                yield ("counts", index, result.counts)
                if not result.records:
                    continue
                instances += len(result.records)
                plan = self._plans[index]
                with watch.clock("spill"):
                    # The run's name derives from its first document's key: a re-run bundle rewrites the same file.
                    run_path = fileio.join(plan.tmp_dir, f"run-{keys.seed64(bucket[0].key):016x}.bin")
                    stream, tmp = fileio.create_temp_for(run_path)
                    with stream:
                        shard_index = spill.write_run(stream, result.shard_ids, result.keys, result.records)
                    fileio.commit_temp(tmp, run_path)
                for shard, (offset, length, count) in shard_index.items():
                    yield ("slice", (index, int(shard)), (run_path, offset, length, count))
            reported = watch.report(rng, bucket[-1].key, len(bucket), instances, reported)
        watch.report(rng, reported=reported)
        self._builder.count_reader_drops(read_counts)
        for index in range(len(self._plans)):
            yield ("counts", index, dict(read_counts))


class _ReadBucketsFn(beam.DoFn):
    """Runner path: reads a range into buckets of documents (serial per range; a gzip file is one range)."""

    def __init__(self, plans: Sequence[BuildPlan], progress_topic: Optional[str] = None):
        self._plan = plans[0]  # reading settings are common to all plans
        self._segmenter = None
        self._progress = _Progress(progress_topic)

    def setup(self):
        self._segmenter = _segmenter_for(self._plan)
        self._progress.setup()

    def process(self, rng: InputRange) -> Iterable[Tuple[str, Any, Any]]:
        watch = self._progress
        watch.first_document()
        read_counts: Dict[str, int] = {}
        reported = 0
        for bucket in watch.timed_read(_read_range(self._plan, self._segmenter, rng, read_counts)):
            reported = watch.report(rng, bucket[-1].key, len(bucket), reported=reported)
            yield ("bucket", keys.seed64(bucket[0].key), bucket)
        watch.report(rng, reported=reported)
        yield ("counts", None, read_counts)


class _BuildSlicesFn(beam.DoFn):
    """Runner path: builds a bucket for every plan and outputs its records as one framed blob per shard."""

    def __init__(self, plans: Sequence[BuildPlan], progress_topic: Optional[str] = None):
        self._plans = tuple(plans)
        self._builder = _BucketBuilder(plans, progress_topic)

    def setup(self):
        self._builder.setup()

    def process(self, element) -> Iterable[Tuple[str, Any, Any]]:
        kind, _, value = element
        if kind == "counts":  # a range's reader counts: every plan reports them
            self._builder.count_reader_drops(value)
            for index in range(len(self._plans)):
                yield ("counts", index, value)
            return
        watch = self._builder.progress
        instances = 0
        for index, result in self._builder.build(value):
            yield ("counts", index, result.counts)
            if not result.records:
                continue
            instances += len(result.records)
            with watch.clock("spill"):
                data, shard_index = spill.encode_run(result.shard_ids, result.keys, result.records)
                blobs = spill.split_run(data, shard_index)
            for shard, (blob, count) in blobs.items():
                yield ("slice", (index, int(shard)), (blob, count))
        watch.report(instances=instances)


class _Redistribute(beam.PTransform):
    """Spreads elements over workers through a GroupByKey on a stable integer key (what Reshuffle does; Beam's
    DaskRunner turns Reshuffle into a no-op, so this is spelled out). Integer keys hash alike in every process."""

    def __init__(self, key_fn):
        super().__init__()
        self._key_fn = key_fn

    def expand(self, pcoll):
        return (pcoll
                | "Key" >> beam.Map(lambda e, f=self._key_fn: (f(e), e))
                | "Group" >> beam.GroupByKey()
                | "Ungroup" >> beam.FlatMap(lambda kv: kv[1]))


class _CountingStream:
    """Wraps a writable stream and counts the bytes that reach it (the shard's size, without a stat call)."""

    def __init__(self, raw):
        self._raw = raw
        self.bytes = 0

    def write(self, data) -> int:
        self.bytes += len(data)
        return self._raw.write(data)

    def flush(self) -> None:
        if hasattr(self._raw, "flush"):
            self._raw.flush()

    def close(self) -> None:
        self._raw.close()


class _WriteShardFn(beam.DoFn):
    """Writes one shard from its slices, in (key, bytes) order: one temp file + rename per shard."""

    def __init__(self, plans: Sequence[BuildPlan], shuffle: str, progress_topic: Optional[str] = None):
        self._plans = tuple(plans)
        self._shuffle = shuffle
        self._written = Metrics.counter(NAMESPACE, "instances_written")
        self._progress = _Progress(progress_topic)

    def setup(self):
        self._progress.setup()

    def process(self, element) -> Iterable[Tuple[int, Tuple[str, Dict[str, Any]]]]:
        with self._progress.clock("write_shards"):
            written = self._write(element)
        self._progress.report(shards=1)
        yield written

    def _write(self, element) -> Tuple[int, Tuple[str, Dict[str, Any]]]:
        (index, shard), payloads = element
        result = _write_shard(self._plans[index], shard, payloads, self._shuffle)
        self._written.inc(result["num_instances"])
        return index, ("shard", result)


def _write_shard(plan: BuildPlan, shard: int, payloads: Iterable[Any], shuffle: str) -> Dict[str, Any]:
    """Writes one shard from its slices (none for a shard no record reached), in (key, bytes) order: one temp
    file + rename; returns its manifest entry."""
    payloads = list(payloads)  # iterated twice: the count, then the merge
    expected = sum(p[-1] for p in payloads)
    if shuffle == "local_files":
        chunks = spill.merge_segments_framed(fileio.open_read, payloads)  # it orders the segments itself
    else:
        chunks = spill.sort_blobs_framed(payloads)
    path = fileio.join(plan.output_dir, plan.shard_name(shard))
    stream, tmp = fileio.create_temp_for(path)
    counting = _CountingStream(stream)
    writer = TFRecordWriter(counting, plan.compression)
    writer.write_framed(chunks)
    writer.close()
    if writer.count != expected:
        fileio.delete([tmp])
        raise RuntimeError(f"{path}: wrote {writer.count} records, the shuffle held {expected}")
    fileio.commit_temp(tmp, path)
    return {"shard": shard, "path": plan.shard_name(shard), "num_instances": writer.count, "bytes": counting.bytes}


def remove_temporary_files(plan: BuildPlan) -> None:
    """The plan's run-file folder and the temp files of failed attempts (one listing, one batched delete); call
    once no writer into the output folder is left (all shards written, or the job ended)."""
    fileio.delete_tree(plan.tmp_dir)
    fileio.delete_stray_temps(plan.output_dir)


class _WriteManifestFn(beam.DoFn):
    """Writes a plan's manifest.json (atomically) and _SUCCESS, once its shards are all written; first removes
    the plan's temporary folder and stray temp files of failed attempts (one listing, one batched delete)."""

    def __init__(self, plans: Sequence[BuildPlan], manifest_bases: Sequence[Dict[str, Any]], started_at: float,
                 shuffle: str):
        self._plans = tuple(plans)
        self._bases = tuple(manifest_bases)
        self._started_at = started_at
        self._shuffle = shuffle

    def process(self, element):
        from pipeline.manifest import make_manifest  # pylint: disable=import-outside-toplevel
        index, items = element
        plan = self._plans[index]
        counts: Dict[str, int] = {}
        shards: List[Dict[str, Any]] = []
        for kind, value in items:
            if kind == "counts":
                counts = _sum_counts([counts, value])
            else:
                shards.append(value)
        written = sorted(s["shard"] for s in shards)
        if len(set(written)) != len(written) or not set(written) <= set(range(plan.cfg.num_shards)):
            raise RuntimeError(f"{plan.output_dir}: shard results {written} for {plan.cfg.num_shards} shards")
        # A shard no record reached is written here, empty: no shard waits for a placeholder element (a Flatten of
        # the slices with one would hold all records in a runner that materialises Flattens, see
        # docs/portable_runner_record_loss.md). A lost slice still fails below: the shards' instances are checked
        # against the instances built (make_manifest).
        shards += [_write_shard(plan, shard, [], self._shuffle)
                   for shard in sorted(set(range(plan.cfg.num_shards)) - set(written))]
        shards.sort(key=lambda s: s["shard"])
        remove_temporary_files(plan)
        manifest = make_manifest(self._bases[index], counts, shards, time.time() - self._started_at)
        out = plan.output_dir
        fileio.write_atomic(fileio.join(out, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())
        fileio.write_atomic(fileio.join(out, SUCCESS), b"")
        yield manifest


def _is_kind(kind: str):
    return lambda element: element[0] == kind


class BuildPretrainingData(beam.PTransform):
    """Input ranges -> shard files + manifest.json per plan; outputs the manifest dicts.

    Several plans (e.g. seq 128 and seq 512) share one read and one tokenization: each gets its own
    output folder, shards and manifest.
    """

    def __init__(self, plans, manifest_bases, started_at: float, shuffle: str = "local_files",
                 progress_topic: Optional[str] = None):
        super().__init__()
        self._topic = progress_topic  # Dask event topic for progress records (None: the local folder, if any)
        self._plans = tuple(plans) if isinstance(plans, (list, tuple)) else (plans,)
        self._bases = tuple(manifest_bases) if isinstance(manifest_bases, (list, tuple)) else (manifest_bases,)
        self._started_at = started_at
        if shuffle not in SHUFFLE_MODES:
            raise ValueError(f"shuffle={shuffle!r}: expected one of {SHUFFLE_MODES}")
        self._shuffle = shuffle

    def expand(self, ranges):
        plans = self._plans
        if self._shuffle == "local_files":
            built = (ranges
                     | "DistributeRanges" >> beam.Reshuffle()
                     | "BuildInstanceRuns" >> beam.ParDo(_BuildRunsFn(plans, self._topic)))
        else:
            built = (ranges
                     | "DistributeRanges" >> _Redistribute(lambda rng: keys.seed64(rng.file.key, rng.start) >> 33)
                     | "ReadBuckets" >> beam.ParDo(_ReadBucketsFn(plans, self._topic))
                     | "DistributeBuckets" >> _Redistribute(lambda e: (e[1] or 0) >> 33)
                     | "BuildSlices" >> beam.ParDo(_BuildSlicesFn(plans, self._topic)))
        # The slices go straight into their GroupByKey, with no Flatten: the PortableRunner's embedded job server
        # materialises every multi-input Flatten and re-sends it in ~10 MB chunks through a data-plane stream
        # whose time-based flush can wipe writes (docs/portable_runner_record_loss.md). Shards no record reached
        # are written by the manifest step.
        shards = (built
                  | "Slices" >> beam.Filter(_is_kind("slice"))
                  | "KeySlices" >> beam.Map(lambda e: (e[1], e[2]))
                  | "GroupByShard" >> beam.GroupByKey()
                  | "WriteShards" >> beam.ParDo(_WriteShardFn(plans, self._shuffle, self._topic)))
        counts = (built
                  | "Counts" >> beam.Filter(_is_kind("counts"))
                  | "KeyCounts" >> beam.Map(lambda e: (e[1], e[2]))
                  | "SumCounts" >> beam.CombinePerKey(_sum_counts)
                  | "TagCounts" >> beam.Map(lambda kv: (kv[0], ("counts", kv[1]))))
        no_counts = ranges.pipeline | "NoCounts" >> beam.Create([(i, ("counts", {})) for i in range(len(plans))])
        return ((shards, counts, no_counts)
                | "PerPlan" >> beam.Flatten()
                | "GroupByPlan" >> beam.GroupByKey()
                | "WriteManifests" >> beam.ParDo(_WriteManifestFn(plans, self._bases, self._started_at, self._shuffle)))
