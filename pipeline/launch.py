"""`bertbeam launch`: TPU VM training (gcloud) and Dataflow builds, as exact command lines with --dry_run."""
import argparse
import dataclasses
import glob
import importlib.util
import math
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pipeline import build as bertbeam_build
from pipeline import flags as flaglib

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_NAME = "bertbeam"

# ---------------------------------------------------------------------------------------------
# Dataflow sizing. Dataflow's Python workers (Runner v2) start one SDK process per vCPU, so a worker VM
# needs about vCPUs x (peak RSS of one `bertbeam build` worker process) plus the harness and OS.
# Measured with bench/bench_build.py --scale 20 (seq 128, dupe_factor 5, whole-word masking, default 1 MB
# buckets; TensorFlow-free tokenizer), 2026-11-29: one build process peaks at 331 MiB on 0.9 MB of text and
# 376 MiB on 17.7 MB (bounded: one bucket plus the 64 MB shard merge). Dataflow's worker image adds the Google
# Cloud imports (~0.3 CPU-s per process, once). Rounded up below. Override with --worker_peak_rss_gib.
PEAK_RSS_GIB_PER_WORKER_PROCESS: Optional[float] = 0.45
# CPU per input byte. Building, masking and encoding instances dominate, and they grow with the records a plan
# (one --max_seq_length with its --dupe_factor) writes: with dupe_factor and with the bytes a record takes at
# that length. So a plan costs input MB x (vCPU-seconds per MB at its length, dupe_factor 5) x dupe_factor / 5,
# and a build the sum over its plans. The one read and tokenization plans share is inside the measured rates,
# split over the plans with the rest, so a one-length build is priced a little low.
RATE_MEASURED_AT_DUPE = 5
# Output bytes of a plan relative to seq 128 at the same dupe_factor. Measured 2026-12: a 128,512 build wrote
# 2.17x the bytes of seq 128 alone, so seq 512 writes 1.17x. Lengths between are interpolated, others priced as
# the nearest one here.
OUTPUT_BYTES_VS_SEQ128: Dict[int, float] = {128: 1.0, 512: 1.17}
# The runner shuffle path (--shuffle=runner, what Dataflow runs: records reach their shard through the runner's
# GroupByKey, Dataflow Shuffle there), measured 2026-12 with Beam's DaskRunner (2 worker processes on a 2-core
# machine): 0.41 MB of input text per vCPU-second for --max_seq_length=128,512 at dupe_factor 5, start-up
# included. bench_build's 3.5 MB/s at seq 128 with --shuffle=runner (2026-11-29) was on the local DirectRunner
# and is not used: the figure here is from a distributed runner's GroupByKey, as Dataflow's is.
RUNNER_MB_PER_S_PER_VCPU_128_512 = 0.41
# MB of input text per vCPU-second at dupe_factor 5, by (shuffle path, seq length). A length missing for a path
# costs its seq 128 rate scaled by OUTPUT_BYTES_VS_SEQ128 (CPU follows the records written).
MB_PER_S_PER_VCPU_AT_DUPE5: Dict[Tuple[str, int], float] = {
    # Derived, not measured: the 128,512 rate split over its two lengths by their output bytes (1 : 1.17), so
    # seq 128 alone runs 0.41 x 2.17 = 0.89 MB/s and the two together cost 1/0.89 + 1.17/0.89 = 1/0.41.
    ("runner", 128): RUNNER_MB_PER_S_PER_VCPU_128_512 * (1 + OUTPUT_BYTES_VS_SEQ128[512]),
    # Measured with bench_build.py (seq 128, dupe_factor 5, local DirectRunner, run files on local disk,
    # 2026-11-29): 3.8 MB/s, sized 3.0.
    ("local_files", 128): 3.0,
}
# With --shuffle=runner (auto on Dataflow) a worker process writes a shard from its grouped blobs held in memory:
# it orders their (key, frame length) index with numpy and copies frames in 4 MB windows. Measured 2026-11-29
# (a 249 MiB shard of 336,000 records as 24 blobs, spill.sort_blobs_framed written to /dev/null): 79 MiB above
# holding the blobs, so 1.3x the shard's bytes at the peak (2.4x before, when each record became a (key, bytes)
# tuple for a Python sort), on top of a process without a bucket in hand (~0.35 GiB). Rounded up below.
SHARD_SORT_MEMORY_FACTOR = 1.4
SHARD_WRITER_BASE_GIB = 0.35
DATAFLOW_HARNESS_GIB = 1.0  # per VM: Dataflow's worker harness, boot disk cache, OS
DATAFLOW_MEMORY_HEADROOM = 1.25  # RSS grows with skewed documents; leave a quarter free
# Families Dataflow accepts, by memory per vCPU (GiB), smallest first.
DATAFLOW_MACHINE_FAMILIES: Tuple[Tuple[str, float], ...] = (
    ("n2-highcpu", 1.0), ("n1-standard", 3.75), ("n1-highmem", 6.5), ("n2-highmem", 8.0))

# TPU software versions for JAX (cloud.google.com/tpu/docs/runtimes).
TPU_RUNTIME_BY_GENERATION = {"v2": "tpu-ubuntu2204-base", "v3": "tpu-ubuntu2204-base",
                             "v4": "tpu-ubuntu2204-base", "v5p": "v2-alpha-tpuv5",
                             "v5litepod": "v2-alpha-tpuv5-lite", "v6e": "v2-alpha-tpuv6e"}


class LaunchError(ValueError):
    """A bad accelerator type, flag combination or gcloud failure."""


# ---------------------------------------------------------------------------------------------
# TPU topology


@dataclasses.dataclass(frozen=True)
class TpuTopology:
    """What an accelerator type means for the launch: hosts to install on, devices JAX will see."""
    accelerator_type: str
    generation: str
    num_hosts: int
    num_devices: int  # jax.device_count(): TensorCores on v2/v3, chips on v4 and later


def tpu_topology(accelerator_type: str) -> TpuTopology:
    """v3-8 -> 1 host, 8 devices; v3-256 -> 32 hosts, 256 devices; v4-32 -> 4 hosts, 16 devices."""
    generation, sep, size_text = accelerator_type.rpartition("-")
    if generation == "v5e":
        generation = "v5litepod"
    if not sep or generation not in TPU_RUNTIME_BY_GENERATION or not size_text.isdigit():
        raise LaunchError(f"--accelerator_type {accelerator_type!r}: expected e.g. v3-8, v3-256, v4-32, "
                          f"v5p-16, v5litepod-16, v6e-8")
    size = int(size_text)
    if generation in ("v2", "v3"):
        # The suffix counts TensorCores; JAX sees each core; 4 chips x 2 cores per host.
        hosts, devices = max(1, size // 8), size
    elif generation in ("v4", "v5p"):
        # The suffix counts TensorCores; a chip's two cores are one JAX device (megacore); 4 chips per host.
        hosts, devices = max(1, size // 8), max(1, size // 2)
    else:
        # v5e / v6e: the suffix counts chips; up to 8 chips on a single host, 4 per host in multi-host slices.
        hosts, devices = (1 if size <= 8 else size // 4), size
    return TpuTopology(accelerator_type, generation, hosts, devices)


def default_runtime_version(accelerator_type: str) -> str:
    """The TPU software version Google lists for JAX on this generation."""
    return TPU_RUNTIME_BY_GENERATION[tpu_topology(accelerator_type).generation]


# ---------------------------------------------------------------------------------------------
# TPU command lines (pure)


@dataclasses.dataclass(frozen=True)
class TpuLaunch:
    """Everything `bertbeam launch tpu` needs to know."""
    name: str
    zone: str
    accelerator_type: str
    project: Optional[str] = None
    runtime_version: Optional[str] = None
    config: Optional[str] = None  # local training config, copied to every worker
    package: Optional[str] = None  # sdist/wheel (local path or gs://); default: built from this checkout
    spot: bool = False
    preemptible: bool = False
    python: str = "python3"
    jax_requirement: str = "jax[tpu]"
    log_file: str = "bertbeam_train.log"
    background: bool = True  # nohup: the run survives the ssh session
    train_flags: Tuple[str, ...] = ()


def _tpu_vm(verb: str, launch: TpuLaunch) -> List[str]:
    cmd = ["gcloud", "compute", "tpus", "tpu-vm", verb, launch.name, f"--zone={launch.zone}"]
    if launch.project:
        cmd.append(f"--project={launch.project}")
    return cmd


def describe_command(launch: TpuLaunch) -> List[str]:
    """Prints the TPU's state (READY, STOPPED, PREEMPTED, ...); fails with NOT_FOUND if there is none."""
    return _tpu_vm("describe", launch) + ["--format=value(state)"]


def create_command(launch: TpuLaunch) -> List[str]:
    """Creates the TPU VM or pod slice."""
    if launch.spot and launch.preemptible:
        raise LaunchError("give --spot or --preemptible, not both")
    cmd = _tpu_vm("create", launch) + [
        f"--accelerator-type={launch.accelerator_type}",
        f"--version={launch.runtime_version or default_runtime_version(launch.accelerator_type)}"]
    if launch.spot:
        cmd.append("--spot")
    if launch.preemptible:
        cmd.append("--preemptible")
    return cmd


def start_command(launch: TpuLaunch) -> List[str]:
    """Restarts a STOPPED TPU VM."""
    return _tpu_vm("start", launch)


def scp_command(launch: TpuLaunch, local_path: str, remote_path: str) -> List[str]:
    """Copies one local file to the same path on every worker of the slice."""
    cmd = ["gcloud", "compute", "tpus", "tpu-vm", "scp", local_path, f"{launch.name}:{remote_path}",
           f"--zone={launch.zone}"]
    if launch.project:
        cmd.append(f"--project={launch.project}")
    return cmd + ["--worker=all"]


def ssh_command(launch: TpuLaunch, remote_command: str) -> List[str]:
    """Runs one shell command on every worker (`--worker=all`; the same command on all hosts)."""
    return _tpu_vm("ssh", launch) + ["--worker=all", "--command", remote_command]


def remote_quote(word: str) -> str:
    """Shell-quotes for the remote shell, preferring double quotes so the printed gcloud line (which
    single-quotes the whole --command) needs no nested escapes."""
    if word and all(c.isalnum() or c in "@%+=:,./-_" for c in word):
        return word
    if not any(c in word for c in '"$`\\!'):
        return f'"{word}"'
    return shlex.quote(word)


def _remote_join(words: Sequence[str]) -> str:
    return " ".join(remote_quote(w) for w in words)


def package_remote_name(package: str) -> str:
    """The file name the package has on the workers (home directory)."""
    return package.rstrip("/").rsplit("/", 1)[-1]


def install_remote_command(launch: TpuLaunch, package: str) -> str:
    """Shell command installing the package with its [train] extra plus JAX's TPU build on one worker."""
    name = package_remote_name(package)
    steps = []
    if package.startswith("gs://"):
        steps.append(_remote_join(["gsutil", "cp", package, name]))
    # `./` makes pip treat it as a file; [train] pulls jax, flax, optax, orbax (setup.py extras).
    steps.append(_remote_join([launch.python, "-m", "pip", "install", "--upgrade", f"./{name}[train]",
                             launch.jax_requirement]))
    return " && ".join(steps)


def train_remote_command(launch: TpuLaunch, train_flags: Sequence[str]) -> str:
    """Shell command starting `bertbeam train` on one worker; identical on all hosts of a slice."""
    flags = list(train_flags)
    if launch.config:
        flags = ["--config", package_remote_name(launch.config)] + flags
    topology = tpu_topology(launch.accelerator_type)
    if topology.num_hosts > 1 and not any(f.lstrip("-").split("=")[0] in ("jax_distributed", "nojax_distributed")
                                          for f in flags):
        # Multi-host slice: every host runs this same command; jax.distributed.initialize() finds its peers
        # from the TPU metadata, with no coordinator address to pass.
        flags.append("--jax_distributed=True")
    train = _remote_join([launch.python, "-m", "training.run_pretrain"] + flags)
    if not launch.background:
        return train
    return f"nohup {train} > {remote_quote(launch.log_file)} 2>&1 < /dev/null &"


def package_version(repo_root: Path = REPO_ROOT) -> str:
    """The version setup.py declares (the sdist is named bertbeam-VERSION.tar.gz)."""
    import re  # pylint: disable=import-outside-toplevel
    found = re.search(r"""version\s*=\s*["']([^"']+)["']""", (repo_root / "setup.py").read_text(encoding="utf-8"))
    if not found:
        raise LaunchError(f"no version= in {repo_root / 'setup.py'}")
    return found.group(1)


def sdist_command(repo_root: str, dist_dir: str) -> List[str]:
    """Builds this checkout's sdist as Beam's stager does: `python -m build` if installed, else
    `setup.py sdist`. Run it with the checkout as working directory (setup.py finds packages there)."""
    if importlib.util.find_spec("build") is not None:
        return [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--outdir", dist_dir, repo_root]
    return [sys.executable, "setup.py", "sdist", "--dist-dir", dist_dir]


@dataclasses.dataclass(frozen=True)
class TpuPlan:
    """The gcloud commands of one launch, in order. create/start run only when describe says so."""
    describe: List[str]
    create: List[str]
    start: List[str]
    copies: List[List[str]]
    install: List[str]
    train: List[str]
    warnings: List[str]


def batch_warnings(launch: TpuLaunch, train_batch_size: Optional[int]) -> List[str]:
    """Problems visible before launching: a global batch that does not split evenly over the devices."""
    if not train_batch_size:
        return []
    devices = tpu_topology(launch.accelerator_type).num_devices
    if train_batch_size % devices:
        return [f"train_batch_size {train_batch_size} is not a multiple of the {devices} devices of "
                f"{launch.accelerator_type}"]
    return []


def tpu_plan(launch: TpuLaunch, package: str, train_batch_size: Optional[int] = None) -> TpuPlan:
    """All gcloud commands for a launch; `package` is a local sdist/wheel path or a gs:// URL."""
    copies = []
    if not package.startswith("gs://"):
        copies.append(scp_command(launch, package, package_remote_name(package)))
    if launch.config:
        copies.append(scp_command(launch, launch.config, package_remote_name(launch.config)))
    return TpuPlan(
        describe=describe_command(launch),
        create=create_command(launch),
        start=start_command(launch),
        copies=copies,
        install=ssh_command(launch, install_remote_command(launch, package)),
        train=ssh_command(launch, train_remote_command(launch, launch.train_flags)),
        warnings=batch_warnings(launch, train_batch_size),
    )


def format_tpu_plan(plan: TpuPlan, build: Optional[List[str]], topology: TpuTopology) -> str:
    """The --dry_run listing: every command shell-quoted, in the order it would run."""
    lines = [f"# {topology.accelerator_type}: {topology.num_hosts} host(s), {topology.num_devices} JAX devices"]
    lines += [f"# warning: {w}" for w in plan.warnings]
    lines += ["# 1. reuse the TPU if it exists:", shlex.join(plan.describe),
              "# 1b. if describe fails with NOT_FOUND, create it:", shlex.join(plan.create),
              "# 1c. if its state is STOPPED, start it:", shlex.join(plan.start)]
    if build:
        lines += ["# 2. build the package from this checkout:",
                  f"cd {shlex.quote(str(REPO_ROOT))} && {shlex.join(build)}"]
    lines += ["# 3. copy to every worker:"] + [shlex.join(c) for c in plan.copies]
    lines += ["# 4. install on every worker:", shlex.join(plan.install),
              "# 5. start training on all hosts:", shlex.join(plan.train)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Dataflow (pure)


def peak_rss_with_shard_sort(build_peak_gib: float, shard_mb: float) -> float:
    """Peak RSS of one worker process with --shuffle=runner: the larger of building a bucket and sorting a shard."""
    return max(build_peak_gib, SHARD_WRITER_BASE_GIB + SHARD_SORT_MEMORY_FACTOR * shard_mb / 1024)


def advise_dataflow_machine(peak_rss_gib: float, vcpus: int = 4) -> Tuple[str, List[str], str]:
    """Worker machine type for a measured peak RSS per worker process -> (type, extra flags, reason)."""
    if peak_rss_gib <= 0 or vcpus < 1:
        raise LaunchError("peak RSS and vCPUs must be positive")
    need = vcpus * peak_rss_gib * DATAFLOW_MEMORY_HEADROOM + DATAFLOW_HARNESS_GIB
    for family, gib_per_vcpu in DATAFLOW_MACHINE_FAMILIES:
        if vcpus * gib_per_vcpu >= need:
            return (f"{family}-{vcpus}", [],
                    f"{vcpus} SDK processes x {peak_rss_gib:.2f} GiB x {DATAFLOW_MEMORY_HEADROOM} + "
                    f"{DATAFLOW_HARNESS_GIB:.0f} GiB = {need:.1f} GiB <= {vcpus * gib_per_vcpu:.1f} GiB")
    # Even the largest family cannot hold one process per vCPU: run one SDK process per VM instead.
    family, gib_per_vcpu = DATAFLOW_MACHINE_FAMILIES[-1]
    single = peak_rss_gib * DATAFLOW_MEMORY_HEADROOM + DATAFLOW_HARNESS_GIB
    if single > vcpus * gib_per_vcpu:
        raise LaunchError(f"one worker process needs {single:.1f} GiB, more than {family}-{vcpus} has")
    return (f"{family}-{vcpus}", ["--experiments=no_use_multiple_sdk_containers"],
            f"{need:.1f} GiB for one process per vCPU exceeds every family; one SDK process per VM "
            f"needs {single:.1f} GiB")


def advise_max_num_workers(corpus_gb: float, target_hours: float, mb_per_s_per_vcpu: float, vcpus: int) -> int:
    """Workers for a corpus to pass through in target_hours at a measured input rate per vCPU."""
    if min(corpus_gb, target_hours, mb_per_s_per_vcpu) <= 0 or vcpus < 1:
        raise LaunchError("corpus size, target hours, rate and vCPUs must be positive")
    return max(1, math.ceil(corpus_gb * 1000 / (mb_per_s_per_vcpu * vcpus * target_hours * 3600)))


def output_bytes_vs_seq128(seq_length: int) -> float:
    """A plan's output bytes relative to seq 128 at the same dupe_factor: measured, interpolated between
    measured lengths, or the nearest measured length's outside them."""
    lengths = sorted(OUTPUT_BYTES_VS_SEQ128)
    seq = min(max(seq_length, lengths[0]), lengths[-1])
    lo, hi = max(n for n in lengths if n <= seq), min(n for n in lengths if n >= seq)
    low, high = OUTPUT_BYTES_VS_SEQ128[lo], OUTPUT_BYTES_VS_SEQ128[hi]
    return low if lo == hi else low + (high - low) * (seq - lo) / (hi - lo)


def vcpu_seconds_per_input_mb(shuffle: str, seq_length: int, dupe_factor: int) -> float:
    """CPU one plan spends per MB of input text, from MB_PER_S_PER_VCPU_AT_DUPE5."""
    if (shuffle, 128) not in MB_PER_S_PER_VCPU_AT_DUPE5:
        raise LaunchError(f"no measured rate for --shuffle={shuffle}")
    measured = MB_PER_S_PER_VCPU_AT_DUPE5.get((shuffle, seq_length))
    per_mb = (1 / measured if measured else
              output_bytes_vs_seq128(seq_length) / MB_PER_S_PER_VCPU_AT_DUPE5[(shuffle, 128)])
    return per_mb * dupe_factor / RATE_MEASURED_AT_DUPE


@dataclasses.dataclass(frozen=True)
class _CorpusText:
    """Stands in for build's discovered inputs (size and gzip flag are all its shard count reads)."""
    size: int
    is_gzip: bool = False


@dataclasses.dataclass(frozen=True)
class PlanCost:
    """One plan of the build (a --max_seq_length with its --dupe_factor): its share of the CPU and its output."""
    seq_length: int
    dupe_factor: int
    vcpu_hours: float
    output_gb: float
    num_shards: int
    shard_mb: float  # MiB, the unit of --target_shard_mb
    measured_length: bool  # False: its rate and bytes are interpolated from the measured lengths


@dataclasses.dataclass(frozen=True)
class DataflowCost:
    """What a build of a corpus costs on Dataflow, from the measured rates (on paper, before launching)."""
    corpus_gb: float
    shuffle: str  # runner (Dataflow's default) or local_files
    plans: Tuple[PlanCost, ...]
    mb_per_s_per_vcpu: float  # input MB per vCPU-second for the whole build, all plans together
    rate_given: bool  # --input_mb_per_s_per_vcpu, not the table
    vcpu_hours: float
    workers: int
    vcpus_per_worker: int
    machine_type: str
    wall_hours: float
    output_gb: float
    shuffle_gb: float  # runner: through the GroupByKey, documents once and records once; local_files: run files
    num_shards: int
    shard_mb: float  # the largest plan's shard, which sizes the machine on the runner path
    warnings: Tuple[str, ...] = ()


def dataflow_cost(corpus_gb: float, plans: Sequence[Tuple[int, int]] = ((128, 10),), target_hours: float = 2.0,
                  vcpus: int = 4, mb_per_s_per_vcpu: Optional[float] = None,
                  peak_rss_gib: float = PEAK_RSS_GIB_PER_WORKER_PROCESS or 1.2, target_shard_mb: float = 256.0,
                  num_shards: int = 0, shuffle: str = "runner") -> DataflowCost:
    """The build's vCPU-hours, workers for target_hours, shuffle and output bytes, and shards, per plan and in
    total. plans: (max_seq_length, dupe_factor) pairs; mb_per_s_per_vcpu replaces the table's rates with one
    for the whole build (split over the plans as the table would split it)."""
    if (not plans or min(corpus_gb, target_hours) <= 0 or vcpus < 1 or (mb_per_s_per_vcpu or 1) <= 0
            or min(dupe for _, dupe in plans) < 1):
        raise LaunchError("corpus size, target hours, rate, plans' dupe_factor and vCPUs must be positive")
    if shuffle == "runner" and target_shard_mb > bertbeam_build.MAX_SHARD_MB_RUNNER_SHUFFLE:
        raise LaunchError(f"--target_shard_mb={target_shard_mb:g}: with --shuffle=runner a shard is sorted in one "
                          f"worker's memory; use at most {bertbeam_build.MAX_SHARD_MB_RUNNER_SHUFFLE}")
    input_mb = corpus_gb * 1000
    seconds = [input_mb * vcpu_seconds_per_input_mb(shuffle, seq, dupe) for seq, dupe in plans]
    if mb_per_s_per_vcpu:
        seconds = [s * (input_mb / mb_per_s_per_vcpu) / sum(seconds) for s in seconds]
    rate = input_mb / sum(seconds)
    # Shard counts exactly as `bertbeam build` chooses them (its estimate is seq 128's bytes at every length).
    inputs = [_CorpusText(size=int(corpus_gb * 1e9))]
    priced, warnings = [], []
    for (seq, dupe), secs in zip(plans, seconds):
        flags = argparse.Namespace(num_shards=num_shards, dupe_factor=dupe, target_shard_mb=target_shard_mb)
        shards = bertbeam_build.choose_num_shards(flags, inputs)
        output_bytes = corpus_gb * 1e9 * dupe * bertbeam_build.OUTPUT_BYTES_PER_INPUT_BYTE * output_bytes_vs_seq128(seq)
        priced.append(PlanCost(seq_length=seq, dupe_factor=dupe, vcpu_hours=secs / 3600, output_gb=output_bytes / 1e9,
                               num_shards=shards, shard_mb=output_bytes / shards / (1 << 20),
                               measured_length=seq in OUTPUT_BYTES_VS_SEQ128))
        if shuffle == "runner" and priced[-1].shard_mb > bertbeam_build.MAX_SHARD_MB_RUNNER_SHUFFLE:
            # From this length's bytes (build's own warning assumes seq 128's at every length).
            advised = math.ceil(output_bytes / (target_shard_mb * (1 << 20)))
            warnings.append(f"seq {seq}: ~{format_amount(priced[-1].shard_mb)} MB per shard, and with "
                            f"--shuffle=runner a shard is sorted in one worker's memory: use --num_shards={advised:,} "
                            f"or more (~{target_shard_mb:g} MB shards), or --num_shards=0")
    vcpu_hours = sum(seconds) / 3600
    workers = advise_max_num_workers(corpus_gb, target_hours, rate, vcpus)
    output_gb = sum(p.output_gb for p in priced)
    shard_mb = max(p.shard_mb for p in priced)
    # The runner path sorts whole shards in a worker's memory; local_files merges them from run files (flat).
    peak = peak_rss_with_shard_sort(peak_rss_gib, shard_mb) if shuffle == "runner" else peak_rss_gib
    machine, _, _ = advise_dataflow_machine(peak, vcpus)
    # Runner: the plans share one read, so documents cross the shuffle once; each plan's records cross it once.
    # local_files: only (file, offset) references cross it, and every record is written to a run file and read back.
    shuffle_gb = corpus_gb + output_gb if shuffle == "runner" else output_gb
    return DataflowCost(corpus_gb=corpus_gb, shuffle=shuffle, plans=tuple(priced), mb_per_s_per_vcpu=rate,
                        rate_given=bool(mb_per_s_per_vcpu), vcpu_hours=vcpu_hours, workers=workers,
                        vcpus_per_worker=vcpus, machine_type=machine, wall_hours=vcpu_hours / (workers * vcpus),
                        output_gb=output_gb, shuffle_gb=shuffle_gb, num_shards=sum(p.num_shards for p in priced),
                        shard_mb=shard_mb, warnings=tuple(warnings))


def format_amount(value: float, digits: int = 2) -> str:
    """An estimate to `digits` significant digits, whole numbers kept whole: 0.0042, 0.68, 4.4, 44, 2,231. A
    positive value never prints as 0, however small."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    rounded = round(value, decimals)  # 9.96 -> 10.0: one decimal fewer once rounding adds a digit
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:,.{decimals}f}"


def format_duration(hours: float) -> str:
    """Wall time in minutes under an hour (at least 1), else hours."""
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    return f"{format_amount(hours)} h"


def _shards(n: int) -> str:
    return f"{n:,} shard{'' if n == 1 else 's'}"


def format_dataflow_cost(cost: DataflowCost) -> str:
    """The --dry_run cost lines (comments before the command): each plan, then the build's totals."""
    rates = ("--input_mb_per_s_per_vcpu, split over the plans as the measured rates split it" if cost.rate_given
             else f"rates measured on the {cost.shuffle} shuffle path, pipeline/launch.py")
    plans = f"{len(cost.plans)} plan{'s' if len(cost.plans) > 1 else ''}"
    lines = [f"# cost model: {cost.corpus_gb:,g} GB of text, {plans}, --shuffle={cost.shuffle} ({rates})"]
    for p in cost.plans:
        guessed = "" if p.measured_length else " (length not measured: rate and bytes interpolated)"
        lines.append(f"#   seq {p.seq_length}, dupe_factor {p.dupe_factor}: {format_amount(p.vcpu_hours)} vCPU-hours, "
                     f"output {format_amount(p.output_gb)} GB in {_shards(p.num_shards)} of "
                     f"~{format_amount(p.shard_mb)} MB{guessed}")
    lines += [f"#   rate: {format_amount(cost.mb_per_s_per_vcpu)} MB of input per second per vCPU (whole build)",
              f"#   compute: {format_amount(cost.vcpu_hours)} vCPU-hours",
              f"#   workers: {cost.workers} x {cost.machine_type} ({cost.workers * cost.vcpus_per_worker} vCPUs), "
              f"about {format_duration(cost.wall_hours)}"]
    if cost.shuffle == "runner":
        lines += [f"#   output: {format_amount(cost.output_gb)} GB in {_shards(cost.num_shards)} (each sorted in one "
                  f"worker's memory with --shuffle=runner)",
                  f"#   shuffle: {format_amount(cost.shuffle_gb)} GB through Dataflow Shuffle (documents once, records "
                  f"once); no intermediate files, {cost.num_shards:,} shard writes + manifests"]
    else:
        lines += [f"#   output: {format_amount(cost.output_gb)} GB in {_shards(cost.num_shards)}",
                  f"#   run files: {format_amount(cost.shuffle_gb)} GB written under --output_dir and read back "
                  f"(only their offsets go through the shuffle)"]
    lines += [f"# warning: {w}" for w in cost.warnings]
    return "\n".join(lines)


def build_cost_plans(build_flags: Sequence[str], dupe_factor: Optional[Sequence[int]] = None
                     ) -> Tuple[List[argparse.Namespace], str]:
    """The build's plans (one namespace per --max_seq_length, as `bertbeam build` parses them) and the shuffle
    path it takes on Dataflow. The placeholder paths let a dry run price flags that name no files yet (a later
    flag wins); dupe_factor, when given, replaces the build's."""
    args, _ = bertbeam_build.parse_args(["--input_file", "-", "--output_dir", "-"] + list(build_flags))
    if dupe_factor:
        args.dupe_factor = list(dupe_factor)
    try:
        each = bertbeam_build.per_length_args(args)
    except bertbeam_build.FlagError as e:
        raise LaunchError(str(e)) from e
    # --shuffle=auto is the runner's GroupByKey on Dataflow (build.resolve_shuffle, not called here: on a
    # non-local runner it may import Beam, seconds of start-up for a dry run).
    return each, "runner" if args.shuffle == "auto" else args.shuffle


def dataflow_build_command(project: str, region: str, temp_location: str, build_flags: Sequence[str] = (),
                           machine_type: Optional[str] = None, max_num_workers: Optional[int] = None,
                           setup_file: str = "./setup.py", job_name: Optional[str] = None,
                           extra_options: Sequence[str] = ()) -> List[str]:
    """The `bertbeam build` argv that runs on Dataflow, staging this checkout through setup.py."""
    if not temp_location.startswith("gs://"):
        raise LaunchError(f"--temp_location must be a gs:// path, got {temp_location!r}")
    if not project or not region:
        raise LaunchError("Dataflow needs --project and --region")
    cmd = ["bertbeam", "build", "--runner", "DataflowRunner", "--project", project, "--region", region,
           "--temp_location", temp_location, "--setup_file", setup_file]
    if machine_type:
        cmd += ["--machine_type", machine_type]
    if max_num_workers:
        cmd += ["--max_num_workers", str(int(max_num_workers))]
    if job_name:
        cmd += ["--job_name", job_name]
    return cmd + list(extra_options) + list(build_flags)


# ---------------------------------------------------------------------------------------------
# Execution


Runner = Callable[..., subprocess.CompletedProcess]


def _run(run: Runner, cmd: List[str], **kwargs) -> subprocess.CompletedProcess:
    print("+ " + shlex.join(cmd), flush=True)
    return run(cmd, **kwargs)


def build_sdist(run: Runner, dist_dir: str) -> str:
    """Builds this checkout's sdist into dist_dir and returns its path."""
    result = _run(run, sdist_command(str(REPO_ROOT), dist_dir), cwd=str(REPO_ROOT),
                  capture_output=True, text=True)
    if result.returncode:
        raise LaunchError(f"building the sdist failed:\n{result.stderr[-2000:]}")
    found = sorted(glob.glob(os.path.join(dist_dir, f"{PACKAGE_NAME}-*.tar.gz")))
    if not found:
        raise LaunchError(f"no {PACKAGE_NAME}-*.tar.gz in {dist_dir}")
    return found[-1]


def ensure_tpu(run: Runner, plan: TpuPlan) -> str:
    """Reuses a READY TPU, starts a STOPPED one, creates a missing one; returns what it did."""
    described = _run(run, plan.describe, capture_output=True, text=True)
    if described.returncode:
        if "NOT_FOUND" not in (described.stderr or "") and "not found" not in (described.stderr or "").lower():
            raise LaunchError(f"gcloud describe failed:\n{described.stderr}")
        if _run(run, plan.create).returncode:
            raise LaunchError("gcloud create failed (see above)")
        return "created"
    state = (described.stdout or "").strip()
    if state == "READY":
        return "reused"
    if state == "STOPPED":
        if _run(run, plan.start).returncode:
            raise LaunchError("gcloud start failed (see above)")
        return "started"
    # PREEMPTED / TERMINATED slices cannot be restarted; deleting them is left to the user on purpose.
    raise LaunchError(f"TPU is {state or 'in an unknown state'}; delete it (gcloud compute tpus tpu-vm "
                      f"delete) or wait, then launch again")


def execute_tpu_launch(launch: TpuLaunch, run: Runner = subprocess.run,
                       train_batch_size: Optional[int] = None) -> str:
    """Runs the launch: TPU, package, copies, install, training. Returns what happened to the TPU."""
    with tempfile.TemporaryDirectory(prefix="bertbeam-sdist-") as dist_dir:
        package = launch.package or build_sdist(run, dist_dir)
        plan = tpu_plan(launch, package, train_batch_size)
        for warning in plan.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        what = ensure_tpu(run, plan)
        for cmd in plan.copies + [plan.install, plan.train]:
            if _run(run, cmd).returncode:
                raise LaunchError(f"failed: {shlex.join(cmd)}")
    return what


# ---------------------------------------------------------------------------------------------
# Command line


def _split_passthrough(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _tpu_parser() -> argparse.ArgumentParser:
    p = flaglib.ArgumentParser(prog="bertbeam launch tpu",
                               description="Create or reuse a TPU VM / pod slice, install bertbeam on every "
                                           "worker and start `bertbeam train` on all hosts. Flags after `--` "
                                           "go to `bertbeam train`.")
    p.add_argument("--name", required=True, help="TPU name")
    p.add_argument("--zone", required=True)
    p.add_argument("--accelerator_type", required=True, help="v3-8, v3-256, v4-32, v5litepod-16, ...")
    p.add_argument("--project")
    p.add_argument("--runtime_version", help="TPU software version (default: Google's JAX image for the type)")
    p.add_argument("--config", help="training config (YAML/JSON), copied to every worker")
    p.add_argument("--package", help="sdist/wheel to install (local or gs://); default: built from this checkout")
    p.add_argument("--spot", action="store_true", help="create a Spot TPU")
    p.add_argument("--preemptible", action="store_true", help="create a preemptible TPU")
    p.add_argument("--python", default="python3", help="python on the workers")
    p.add_argument("--jax_requirement", default="jax[tpu]", help="pip requirement for JAX's TPU build")
    p.add_argument("--log_file", default="bertbeam_train.log", help="training log on each worker")
    p.add_argument("--foreground", action="store_true", help="keep the ssh session attached to training")
    p.add_argument("--dry_run", action="store_true", help="print the gcloud commands, run nothing")
    return p


def _dataflow_parser() -> argparse.ArgumentParser:
    p = flaglib.ArgumentParser(prog="bertbeam launch dataflow",
                               description="Run `bertbeam build` on Dataflow with setup.py staging. Flags "
                                           "after `--` go to `bertbeam build` (--input_file, --output_dir, ...).")
    p.add_argument("--project", help="GCP project (required unless --dry_run)")
    p.add_argument("--region", help="Dataflow region (required unless --dry_run)")
    p.add_argument("--temp_location", help="gs://BUCKET/tmp (required unless --dry_run)")
    p.add_argument("--machine_type", help="worker machine type (default: advised from --worker_peak_rss_gib)")
    p.add_argument("--worker_vcpus", type=int, default=4, help="vCPUs per worker for the advice")
    p.add_argument("--worker_peak_rss_gib", type=float, default=PEAK_RSS_GIB_PER_WORKER_PROCESS,
                   help="measured peak RSS of one build worker process (bench/)")
    p.add_argument("--max_num_workers", type=int)
    p.add_argument("--corpus_gb", type=float, help="input size, for worker-count advice and the cost model")
    p.add_argument("--dupe_factor", type=flaglib.int_list, default=None,
                   help="for the cost model, one value or one per length (default: the build's --dupe_factor "
                        "after `--`, else build's default)")
    p.add_argument("--target_hours", type=float, default=2.0)
    p.add_argument("--input_mb_per_s_per_vcpu", type=float, default=None,
                   help="input MB per vCPU-second for the whole build, all lengths together (default: from the "
                        "measured rates per shuffle path and length)")
    p.add_argument("--job_name")
    p.add_argument("--dry_run", action="store_true", help="print the command, run nothing")
    return p


def _main_tpu(argv: Sequence[str]) -> int:
    own, train_flags = _split_passthrough(argv)
    args = _tpu_parser().parse_args(own)
    launch = TpuLaunch(name=args.name, zone=args.zone, accelerator_type=args.accelerator_type,
                       project=args.project, runtime_version=args.runtime_version, config=args.config,
                       package=args.package, spot=args.spot, preemptible=args.preemptible, python=args.python,
                       jax_requirement=args.jax_requirement, log_file=args.log_file,
                       background=not args.foreground, train_flags=tuple(train_flags))
    topology = tpu_topology(launch.accelerator_type)
    batch = _train_batch_size(launch.config, train_flags)
    if args.dry_run:
        package = launch.package or os.path.join(tempfile.gettempdir(), "bertbeam-sdist",
                                                 f"{PACKAGE_NAME}-{package_version()}.tar.gz")
        build = None if launch.package else sdist_command(str(REPO_ROOT), os.path.dirname(package))
        print(format_tpu_plan(tpu_plan(launch, package, batch), build, topology))
        return 0
    what = execute_tpu_launch(launch, train_batch_size=batch)
    print(f"TPU {launch.name} {what}; training started on {topology.num_hosts} host(s); "
          f"log: ~/{launch.log_file} on each worker")
    return 0


def _train_batch_size(config: Optional[str], train_flags: Sequence[str]) -> Optional[int]:
    batch = None
    if config and os.path.exists(config):
        from pipeline.plan import load_config  # pylint: disable=import-outside-toplevel
        batch = load_config(config).get("train_batch_size")
    for i, flag in enumerate(train_flags):
        if flag.startswith("--train_batch_size="):
            batch = int(flag.split("=", 1)[1])
        elif flag == "--train_batch_size" and i + 1 < len(train_flags):
            batch = int(train_flags[i + 1])
    return batch


def _main_dataflow(argv: Sequence[str]) -> int:
    own, build_flags = _split_passthrough(argv)
    args = _dataflow_parser().parse_args(own)
    missing = [f"--{n}" for n in ("project", "region", "temp_location") if not getattr(args, n)]
    if missing and not args.dry_run:
        raise LaunchError(f"Dataflow needs {', '.join(missing)}")
    if args.dry_run:  # placeholders, so a dry run can price a corpus before a project exists
        args.project = args.project or "PROJECT"
        args.region = args.region or "REGION"
        args.temp_location = args.temp_location or "gs://BUCKET/tmp"
    each, shuffle = build_cost_plans(build_flags, args.dupe_factor)
    cost = None
    if args.corpus_gb:
        cost = dataflow_cost(args.corpus_gb, [(one.max_seq_length, one.dupe_factor) for one in each],
                             args.target_hours, args.worker_vcpus, args.input_mb_per_s_per_vcpu,
                             args.worker_peak_rss_gib or PEAK_RSS_GIB_PER_WORKER_PROCESS, each[0].target_shard_mb,
                             each[0].num_shards, shuffle)
        print(format_dataflow_cost(cost))
    machine_type, extra = args.machine_type, []
    if not machine_type:
        if args.worker_peak_rss_gib:
            # The runner path sorts a shard in memory: the largest plan's shard when the corpus size is known.
            shard_mb = cost.shard_mb if cost else each[0].target_shard_mb
            peak = (peak_rss_with_shard_sort(args.worker_peak_rss_gib, shard_mb) if shuffle == "runner"
                    else args.worker_peak_rss_gib)
            machine_type, extra, why = advise_dataflow_machine(peak, args.worker_vcpus)
            print(f"# machine type {machine_type}: {why}")
        else:
            print("# no measured peak RSS per worker process (--worker_peak_rss_gib); Dataflow's default "
                  "machine type applies")
    workers = args.max_num_workers
    if not workers and cost is not None:
        workers = cost.workers
        print(f"# max_num_workers {workers}: {args.corpus_gb:,g} GB in {args.target_hours:g} h "
              f"at {format_amount(cost.mb_per_s_per_vcpu)} MB/s per vCPU (all plans) x {args.worker_vcpus} vCPUs")
    setup_file = REPO_ROOT / "setup.py"
    if not setup_file.exists():
        raise LaunchError("setup.py not found: run from a bertbeam checkout (Dataflow stages it)")
    cmd = dataflow_build_command(args.project, args.region, args.temp_location, build_flags, machine_type,
                                 workers, str(setup_file), args.job_name, extra)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    from pipeline.main import main as bertbeam_main  # pylint: disable=import-outside-toplevel
    return bertbeam_main(cmd[1:])


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    targets = {"tpu": _main_tpu, "dataflow": _main_dataflow}
    if not argv or argv[0] not in targets:
        print("usage: bertbeam launch tpu|dataflow [flags] [-- flags for train|build]  (--help for each)",
              file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return targets[argv[0]](argv[1:])
    except LaunchError as e:
        print(f"bertbeam launch: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
