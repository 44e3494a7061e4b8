"""`bertbeam launch`: exact gcloud commands for a v3-8 and a v3-256 pod, Dataflow argv, staged package contents."""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pipeline import launch as L

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "training" / "configs"


@pytest.mark.parametrize("accel,hosts,devices", [
    ("v3-8", 1, 8), ("v3-32", 4, 32), ("v3-256", 32, 256), ("v2-8", 1, 8), ("v4-8", 1, 4), ("v4-32", 4, 16),
    ("v5p-128", 16, 64), ("v5litepod-8", 1, 8), ("v5litepod-16", 4, 16), ("v6e-8", 1, 8), ("v6e-256", 64, 256),
])
def test_topology(accel, hosts, devices):
    t = L.tpu_topology(accel)
    assert (t.num_hosts, t.num_devices) == (hosts, devices)


@pytest.mark.parametrize("bad", ["v3", "v9-8", "v3-x", "tpu-8"])
def test_bad_accelerator_type(bad):
    with pytest.raises(L.LaunchError):
        L.tpu_topology(bad)


def test_runtime_versions():
    assert L.default_runtime_version("v3-256") == "tpu-ubuntu2204-base"
    assert L.default_runtime_version("v5litepod-16") == "v2-alpha-tpuv5-lite"
    assert L.default_runtime_version("v6e-8") == "v2-alpha-tpuv6e"


def test_v3_8_commands():
    launch = L.TpuLaunch(name="notram-t1", zone="europe-west4-a", accelerator_type="v3-8",
                         project="notram-v1", config="training/configs/t1_mbert_step1.yaml",
                         train_flags=("--pretrain_data", "gs://notram/corpus1_128", "--output_dir", "gs://notram/runs"))
    plan = L.tpu_plan(launch, "/tmp/d/bertbeam-0.1.0.tar.gz", train_batch_size=2760)
    base = ["gcloud", "compute", "tpus", "tpu-vm"]
    where = ["--zone=europe-west4-a", "--project=notram-v1"]
    assert plan.describe == base + ["describe", "notram-t1"] + where + ["--format=value(state)"]
    assert plan.create == base + ["create", "notram-t1"] + where + [
        "--accelerator-type=v3-8", "--version=tpu-ubuntu2204-base"]
    assert plan.start == base + ["start", "notram-t1"] + where
    assert plan.copies == [
        base + ["scp", "/tmp/d/bertbeam-0.1.0.tar.gz", "notram-t1:bertbeam-0.1.0.tar.gz"] + where + ["--worker=all"],
        base + ["scp", "training/configs/t1_mbert_step1.yaml", "notram-t1:t1_mbert_step1.yaml"] + where
        + ["--worker=all"]]
    assert plan.install == base + ["ssh", "notram-t1"] + where + [
        "--worker=all", "--command",
        'python3 -m pip install --upgrade "./bertbeam-0.1.0.tar.gz[train]" "jax[tpu]"']
    assert plan.train == base + ["ssh", "notram-t1"] + where + [
        "--worker=all", "--command",
        "nohup python3 -m training.run_pretrain --config t1_mbert_step1.yaml --pretrain_data "
        "gs://notram/corpus1_128 --output_dir gs://notram/runs > bertbeam_train.log 2>&1 < /dev/null &"]
    assert plan.warnings == []  # 2,760 = 345 per core
    # One host: no jax.distributed needed.
    assert "jax_distributed" not in plan.train[-1]


def test_v3_256_pod_commands():
    launch = L.TpuLaunch(name="t9-pod", zone="us-east1-d", accelerator_type="v3-256", preemptible=True,
                         config=str(CONFIGS / "t9_bert_large_seq128.yaml"), package="gs://b/bertbeam-0.1.0.tar.gz",
                         train_flags=("--pretrain_data=gs://b/corpus2_uncased_128",))
    plan = L.tpu_plan(launch, launch.package, train_batch_size=32768)
    assert L.tpu_topology("v3-256").num_hosts == 32
    assert plan.create[-2:] == ["--version=tpu-ubuntu2204-base", "--preemptible"]
    assert "--accelerator-type=v3-256" in plan.create
    # gs:// package: no scp of it; every worker fetches it itself. The config goes to all 32 hosts.
    assert len(plan.copies) == 1 and plan.copies[0][-1] == "--worker=all"
    for cmd in (plan.install, plan.train):
        assert cmd[4:6] == ["ssh", "t9-pod"] and "--worker=all" in cmd  # same command on every host
    install = shlex.split(plan.install[-1])
    assert install[:4] == ["gsutil", "cp", "gs://b/bertbeam-0.1.0.tar.gz", "bertbeam-0.1.0.tar.gz"]
    train = shlex.split(plan.train[-1])
    assert train[:5] == ["nohup", "python3", "-m", "training.run_pretrain", "--config"]
    assert "--jax_distributed=True" in train  # multi-host: jax.distributed.initialize() on every host
    assert train[-6:] == [">", "bertbeam_train.log", "2>&1", "<", "/dev/null", "&"]
    assert plan.warnings == []  # 32,768 / 256 devices = 128


def test_explicit_jax_distributed_flag_is_kept():
    launch = L.TpuLaunch(name="n", zone="z", accelerator_type="v4-32", train_flags=("--nojax_distributed",))
    assert L.train_remote_command(launch, launch.train_flags).count("jax_distributed") == 1


def test_remote_quoting_survives_the_remote_shell():
    launch = L.TpuLaunch(name="n", zone="z", accelerator_type="v3-8", background=False)
    flags = ["--pretrain_data", "gs://b/my corpus", "--run_prefix", "it's", "--learning_rate=4e-4"]
    assert shlex.split(L.train_remote_command(launch, flags)) == [
        "python3", "-m", "training.run_pretrain"] + flags


def test_batch_warning():
    launch = L.TpuLaunch(name="n", zone="z", accelerator_type="v3-256")
    assert L.batch_warnings(launch, 2760) and not L.batch_warnings(launch, 32768)


def test_spot_and_preemptible_conflict():
    with pytest.raises(L.LaunchError):
        L.create_command(L.TpuLaunch(name="n", zone="z", accelerator_type="v3-8", spot=True, preemptible=True))


def test_dry_run_prints_and_runs_nothing(monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"ran {args}")
    monkeypatch.setattr(subprocess, "run", forbidden)
    rc = L.main(["tpu", "--name", "t9-pod", "--zone", "us-east1-d", "--accelerator_type", "v3-256",
                 "--config", str(CONFIGS / "t9_bert_large_seq128.yaml"), "--dry_run", "--",
                 "--pretrain_data", "gs://b/c128"])
    assert rc == 0
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if not l.startswith("#")]
    assert lines[0] == ("gcloud compute tpus tpu-vm describe t9-pod --zone=us-east1-d "
                        "'--format=value(state)'")
    assert lines[1] == ("gcloud compute tpus tpu-vm create t9-pod --zone=us-east1-d --accelerator-type=v3-256 "
                        "--version=tpu-ubuntu2204-base")
    assert "32 host(s), 256 JAX devices" in out
    assert f"bertbeam-{L.package_version()}.tar.gz" in out and "setup.py sdist --dist-dir" in out
    # Every printed command parses back into the argv that would run.
    train_line = [l for l in lines if "training.run_pretrain" in l][0]
    argv = shlex.split(train_line)
    assert argv[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "t9-pod", "--zone=us-east1-d", "--worker=all"]
    assert "--pretrain_data gs://b/c128 --jax_distributed=True" in argv[-1]


class FakeGcloud:
    """Records commands; answers `describe` with the given state (None = NOT_FOUND)."""

    def __init__(self, state):
        self.state, self.calls = state, []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        if cmd[4] == "describe":
            if self.state is None:
                return subprocess.CompletedProcess(cmd, 1, "", "ERROR: (gcloud) NOT_FOUND: Resource not found")
            return subprocess.CompletedProcess(cmd, 0, self.state + "\n", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.mark.parametrize("state,what,verbs", [
    (None, "created", ["describe", "create", "scp", "ssh", "ssh"]),
    ("READY", "reused", ["describe", "scp", "ssh", "ssh"]),
    ("STOPPED", "started", ["describe", "start", "scp", "ssh", "ssh"]),
])
def test_create_or_reuse(state, what, verbs):
    fake = FakeGcloud(state)
    launch = L.TpuLaunch(name="n", zone="z", accelerator_type="v3-8", package="/tmp/bertbeam-0.1.0.tar.gz")
    assert L.execute_tpu_launch(launch, run=fake) == what
    assert [c[4] for c in fake.calls] == verbs


def test_preempted_tpu_is_not_deleted_silently():
    fake = FakeGcloud("PREEMPTED")
    launch = L.TpuLaunch(name="n", zone="z", accelerator_type="v3-256", package="gs://b/p.tar.gz")
    with pytest.raises(L.LaunchError, match="PREEMPTED"):
        L.execute_tpu_launch(launch, run=fake)
    assert [c[4] for c in fake.calls] == ["describe"]


# ---------------------------------------------------------------------------------------------
# Dataflow


def test_dataflow_build_command_and_beam_reads_it():
    cmd = L.dataflow_build_command("notram", "europe-west4", "gs://notram-west4-a/tmp",
                                   ["--input_file", "gs://notram-west4-a/text/*.txt", "--output_dir",
                                    "gs://notram-west4-a/corpus1_128"], machine_type="n1-highmem-4",
                                   max_num_workers=50)
    assert cmd == ["bertbeam", "build", "--runner", "DataflowRunner", "--project", "notram", "--region",
                   "europe-west4", "--temp_location", "gs://notram-west4-a/tmp", "--setup_file", "./setup.py",
                   "--machine_type", "n1-highmem-4", "--max_num_workers", "50", "--input_file",
                   "gs://notram-west4-a/text/*.txt", "--output_dir", "gs://notram-west4-a/corpus1_128"]
    options_mod = pytest.importorskip("apache_beam.options.pipeline_options")
    opts = options_mod.PipelineOptions(cmd[2:])  # build's own flags are ignored by Beam's parser
    assert opts.view_as(options_mod.StandardOptions).runner == "DataflowRunner"
    gcp = opts.view_as(options_mod.GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("notram", "europe-west4", "gs://notram-west4-a/tmp")
    workers = opts.view_as(options_mod.WorkerOptions)
    assert (workers.machine_type, workers.max_num_workers) == ("n1-highmem-4", 50)
    assert opts.view_as(options_mod.SetupOptions).setup_file == "./setup.py"


def test_dataflow_needs_gcs_temp_location():
    with pytest.raises(L.LaunchError):
        L.dataflow_build_command("p", "r", "/tmp/x")


@pytest.mark.parametrize("rss,vcpus,machine,extra", [
    (1.5, 4, "n1-standard-4", []),  # 4 x 1.5 x 1.25 + 1 = 8.5 <= 15
    (2.5, 4, "n1-standard-4", []),  # 13.5 <= 15
    (4.0, 4, "n1-highmem-4", []),  # 21 > 15, <= 26
    (5.5, 4, "n2-highmem-4", []),  # 28.5 > 26, <= 32
    (9.0, 4, "n2-highmem-4", ["--experiments=no_use_multiple_sdk_containers"]),  # 46 > 32; one process: 12.25
])
def test_machine_type_advice(rss, vcpus, machine, extra):
    got, got_extra, why = L.advise_dataflow_machine(rss, vcpus)
    assert (got, got_extra) == (machine, extra) and "GiB" in why


def test_worker_count_advice():
    # 1,000 GB in 2 h at 1 MB/s per vCPU on 4-vCPU workers: 1e6 MB / (4 x 7,200 MB) = 34.7 -> 35.
    assert L.advise_max_num_workers(1000, 2, 1.0, 4) == 35


def test_launch_dataflow_dry_run(capsys):
    rc = L.main(["dataflow", "--project", "p", "--region", "europe-west4", "--temp_location", "gs://bkt/tmp",
                 "--worker_peak_rss_gib", "1.5", "--dry_run", "--", "--input_file", "gs://bkt/in/*.txt"])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    argv = shlex.split(last)
    assert argv[:4] == ["bertbeam", "build", "--runner", "DataflowRunner"]
    assert argv[argv.index("--setup_file") + 1] == str(REPO / "setup.py")
    assert argv[argv.index("--machine_type") + 1] == "n1-standard-4"
    assert argv[-2:] == ["--input_file", "gs://bkt/in/*.txt"]


# ---------------------------------------------------------------------------------------------
# The package Dataflow stages (and the TPU workers install)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of this checkout, so that building the sdist leaves the real one untouched."""
    src = tmp_path_factory.mktemp("checkout") / "bertbeam"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", "output", ".pytest_cache", "bench"))
    return src


def test_staged_sdist_contains_every_module(checkout, tmp_path):
    """Builds the sdist exactly as Beam's stager does for --setup_file."""
    stager = pytest.importorskip("apache_beam.runners.portability.stager")
    tarball = stager.Stager._build_setup_package(str(checkout / "setup.py"), str(tmp_path))
    with tarfile.open(tarball) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    expected = {str(p.relative_to(checkout)) for pkg in ("pipeline", "transforms", "vocab", "training")
                for p in (checkout / pkg).rglob("*.py") if "__pycache__" not in p.parts}
    assert {"pipeline/plan.py", "pipeline/launch.py", "training/__init__.py"} <= expected
    assert expected - names == set()
    configs = {str(p.relative_to(checkout)) for p in (checkout / "training" / "configs").glob("*.yaml")}
    assert configs and configs - names == set()  # package_data: the seed configs travel with the package
    assert "setup.py" in names


@pytest.mark.dataflow
def test_dataflow_job_graph_offline(checkout, tmp_path, monkeypatch):
    """`bertbeam build` on DataflowRunner with Beam's --dry_run=True: the job graph is produced (setup.py
    staged, every DoFn pickled) without submitting; the pickled DoFns load in a fresh interpreter. Beam's
    DataflowRunner needs the `dataflow` extra even for a dry run (.ci/run adds it and runs this again)."""
    pytest.importorskip("apache_beam")
    pytest.importorskip("google.auth", reason="needs the dataflow extra: pip install -e '.[dataflow]'")
    build = pytest.importorskip("pipeline.build")
    import pipeline.manifest  # pylint: disable=import-outside-toplevel
    from apache_beam.runners.dataflow import dataflow_runner  # pylint: disable=import-outside-toplevel
    from apache_beam.portability import common_urns, python_urns  # pylint: disable=import-outside-toplevel
    from apache_beam.portability.api import beam_runner_api_pb2  # pylint: disable=import-outside-toplevel

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "a",
                                "mat", ".", "dog", "ran"]) + "\n")
    words = "the cat sat on a mat . dog ran".split()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join("".join(" ".join(words[(d + s + i) % len(words)] for i in range(8)) + "\n"
                                      for s in range(6)) + "\n" for d in range(20)))
    out = tmp_path / "out"
    captured = {}
    original = dataflow_runner.DataflowRunner.run_pipeline

    def recording(self, *args, **kwargs):
        captured["runner"] = self
        return original(self, *args, **kwargs)

    monkeypatch.setattr(dataflow_runner.DataflowRunner, "run_pipeline", recording)
    # A dry run writes nothing, so there is no manifest for build.run() to read back at the end.
    monkeypatch.setattr(pipeline.manifest, "read_manifest", lambda output_dir: {})
    cmd = L.dataflow_build_command(
        "my-project", "europe-west4", "gs://my-bucket/tmp",
        ["--input_file", str(corpus), "--vocab_file", str(vocab), "--output_dir", str(out),
         "--do_lower_case=True", "--max_seq_length", "32", "--max_predictions_per_seq", "5", "--allow_local_paths"],
        machine_type="n1-standard-4", max_num_workers=3, setup_file=str(checkout / "setup.py"),
        extra_options=["--dry_run=True"])
    build.run(cmd[2:])

    proto = captured["runner"].proto_pipeline
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {"CreateRanges", "BuildPretrainingData"} <= names
    payloads = []
    for t in proto.components.transforms.values():
        if t.spec.urn == common_urns.primitives.PAR_DO.urn:
            do_fn = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload).do_fn
            if do_fn.urn == python_urns.PICKLED_DOFN_INFO:
                payloads.append(do_fn.payload)
    assert len(payloads) >= 5
    blob = tmp_path / "dofns.bin"
    blob.write_bytes(b"".join(len(p).to_bytes(8, "big") + p for p in payloads))
    loader = ("import sys\nfrom apache_beam.internal import pickler\ndata = open(sys.argv[1], 'rb').read()\n"
              "i = n = 0\nwhile i < len(data):\n    size = int.from_bytes(data[i:i + 8], 'big')\n"
              "    pickler.loads(data[i + 8:i + 8 + size]); i += 8 + size; n += 1\nprint(n)\n")
    result = subprocess.run([sys.executable, "-c", loader, str(blob)], cwd=str(checkout), capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(checkout)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) == len(payloads)
    assert not list(out.glob("*.tfrecord*"))  # nothing ran


def test_dataflow_cost_model_dry_run_without_a_project(capsys):
    cost = L.dataflow_cost(110, [(128, 10)], target_hours=2, vcpus=4, mb_per_s_per_vcpu=0.7)
    # 110,000 MB at 0.7 MB/s per vCPU: 157,143 vCPU-seconds = 43.7 vCPU-hours; 5.5 workers of 4 vCPUs for 2 h.
    assert round(cost.vcpu_hours, 1) == 43.7 and cost.workers == 6 and cost.machine_type == "n1-standard-4"
    assert cost.output_gb == 2200 and cost.shuffle_gb == 2310 and cost.shard_mb <= 256
    assert L.main(["dataflow", "--dry_run", "--corpus_gb", "110", "--", "--dupe_factor=5"]) == 0
    out = capsys.readouterr().out
    # Runner path, seq 128 alone at dupe 5: 0.41 x 2.17 = 0.89 MB/s per vCPU, so 110,000 MB take 123,600
    # vCPU-seconds = 34 vCPU-hours, and 2 h on 4-vCPU workers needs 4.3 -> 5 of them.
    assert "34 vCPU-hours" in out and "--max_num_workers 5" in out and "shuffle: 1,210 GB" in out
    # Sorting a ~256 MB shard in memory (runner shuffle) sizes the machine, not the 0.45 GiB of building.
    assert "x 0.70 GiB" in out and "--machine_type n1-standard-4" in out
    assert L.peak_rss_with_shard_sort(0.45, 64) == 0.45
    assert L.peak_rss_with_shard_sort(0.45, 256) == pytest.approx(0.35 + 1.4 / 4)
    assert L.main(["dataflow", "--corpus_gb", "110"]) == 2  # a real launch needs the project


ONE_LENGTH = ["--max_seq_length=128"]
TWO_LENGTHS = ["--max_seq_length=128,512", "--max_predictions_per_seq=20,77", "--dupe_factor=5"]


def _dry_run(capsys, corpus_gb, build_flags, *own):
    assert L.main(["dataflow", "--dry_run", "--corpus_gb", str(corpus_gb), *own, "--", *build_flags]) == 0
    return capsys.readouterr().out


def _amount(out, pattern):
    """The number a printed cost line holds, e.g. _amount(out, r"compute: (.+) vCPU-hours")."""
    found = re.search(pattern, out)
    assert found, f"{pattern!r} not in:\n{out}"
    return float(found.group(1).replace(",", ""))


def test_rates_per_shuffle_path_and_length():
    # The runner path's seq 128 rate is derived from the 128,512 measurement by output bytes (1 : 1.17) ...
    assert L.MB_PER_S_PER_VCPU_AT_DUPE5[("runner", 128)] == pytest.approx(0.41 * 2.17)
    both = L.vcpu_seconds_per_input_mb("runner", 128, 5) + L.vcpu_seconds_per_input_mb("runner", 512, 5)
    assert both == pytest.approx(1 / 0.41)  # ... so both lengths together cost what was measured
    assert L.vcpu_seconds_per_input_mb("runner", 512, 5) == pytest.approx(1.17 / (0.41 * 2.17))
    assert L.vcpu_seconds_per_input_mb("local_files", 128, 10) == pytest.approx(2 / 3.0)  # twice the copies
    assert L.output_bytes_vs_seq128(256) == pytest.approx(1 + 0.17 / 3)  # interpolated
    assert L.output_bytes_vs_seq128(64) == 1.0 and L.output_bytes_vs_seq128(1024) == 1.17  # nearest measured
    with pytest.raises(L.LaunchError):
        L.vcpu_seconds_per_input_mb("no_such_path", 128, 5)


def test_two_lengths_cost_more_than_one():
    one = L.dataflow_cost(110, [(128, 5)])
    two = L.dataflow_cost(110, [(128, 5), (512, 5)])
    assert two.output_gb / one.output_gb == pytest.approx(2.17)  # measured: 128,512 writes 2.17x 128's bytes
    assert two.vcpu_hours / one.vcpu_hours == pytest.approx(2.17)
    assert two.mb_per_s_per_vcpu == pytest.approx(0.41)  # the measured runner-path rate for both lengths
    assert two.shuffle_gb == pytest.approx(110 + two.output_gb)  # documents once, each plan's records once
    assert [(p.seq_length, p.dupe_factor) for p in two.plans] == [(128, 5), (512, 5)]
    assert two.plans[0].num_shards == two.plans[1].num_shards == one.num_shards  # as build chooses them
    assert two.plans[1].shard_mb == pytest.approx(1.17 * two.plans[0].shard_mb)
    assert two.workers > one.workers
    # seq 512's shards come out ~300 MB (build sizes shards from seq 128's bytes); the machine still holds them.
    assert two.plans[1].shard_mb > 256 and two.machine_type == "n1-standard-4"


def test_dry_run_prices_every_length(capsys):
    one = _dry_run(capsys, 110, ["--max_seq_length=128", "--dupe_factor=5"])
    two = _dry_run(capsys, 110, TWO_LENGTHS)
    ratio = _amount(two, r"output: (\S+) GB") / _amount(one, r"output: (\S+) GB")
    assert ratio == pytest.approx(2.17, rel=0.01)
    assert _amount(two, r"compute: (\S+) vCPU-hours") > 2 * _amount(one, r"compute: (\S+) vCPU-hours")
    assert "rate: 0.41 MB" in two and "2 plans" in two
    assert re.search(r"seq 128, dupe_factor 5: .* output 1,100 GB in 4,098 shards", two)
    assert re.search(r"seq 512, dupe_factor 5: .* output 1,287 GB in 4,098 shards of ~300 MB", two)
    # The launch's --dupe_factor replaces the build's, one value or one per length.
    three = _dry_run(capsys, 110, TWO_LENGTHS, "--dupe_factor", "10,2")
    assert "seq 128, dupe_factor 10:" in three and "seq 512, dupe_factor 2:" in three
    assert L.main(["dataflow", "--dry_run", "--corpus_gb", "1", "--dupe_factor", "3,4,5", "--"] + TWO_LENGTHS) == 2
    assert "one value or one per --max_seq_length" in capsys.readouterr().err


ZERO = re.compile(r"(?<![\d.,])0(\.0*)? (vCPU-hours|h\b|min|GB|MB|shards?)")


@pytest.mark.parametrize("corpus_gb", [1, 0.01, 0.0001])
@pytest.mark.parametrize("flags", [ONE_LENGTH, TWO_LENGTHS], ids=["seq128", "seq128+512"])
def test_small_corpus_prints_no_zeros(capsys, corpus_gb, flags):
    out = _dry_run(capsys, corpus_gb, flags)
    assert not ZERO.findall(out), out
    assert "0 vCPU-hours" not in out and "0.0 h" not in out and "output: 0 GB" not in out
    if corpus_gb == 1:
        # 1 GB on one 4-vCPU worker is minutes, printed as minutes.
        assert re.search(r"compute: 0\.\d\d vCPU-hours", out) and re.search(r"about \d+ min", out)
        assert _amount(out, r"output: (\S+) GB") >= 10


@pytest.mark.parametrize("amount,text", [
    (0, "0"), (0.0042, "0.0042"), (0.68, "0.68"), (0.999, "1.0"), (4.37, "4.4"), (9.96, "10"), (43.7, "44"),
    (2231.4, "2,231"), (1e-7, "0.00000010")])
def test_format_amount(amount, text):
    assert L.format_amount(amount) == text


def test_format_duration():
    assert [L.format_duration(h) for h in (0.001, 0.08, 0.99, 1.94, 12.3)] == [
        "1 min", "5 min", "59 min", "1.9 h", "12 h"]


@pytest.mark.parametrize("flags,plans", [(ONE_LENGTH, 1), (TWO_LENGTHS, 2)], ids=["seq128", "seq128+512"])
def test_dry_runs_are_linear_in_corpus_size(capsys, flags, plans):
    runs = {gb: _dry_run(capsys, gb, flags) for gb in (1, 110, 1000)}
    for out in runs.values():
        assert len(re.findall(r"^#   seq \d+, dupe_factor \d+: ", out, re.M)) == plans
    for what in (r"compute: (\S+) vCPU-hours", r"output: (\S+) GB", r"shuffle: (\S+) GB"):
        per_gb = [_amount(out, what) / gb for gb, out in runs.items()]
        assert per_gb == pytest.approx([per_gb[-1]] * 3, rel=0.02), what  # linear, within printed rounding
    shards = [_amount(out, r"output: \S+ GB in (\S+) shard") for out in runs.values()]
    workers = [_amount(out, r"max_num_workers (\d+):") for out in runs.values()]
    assert shards == sorted(shards) and shards[0] < shards[-1]
    assert workers == sorted(workers) and workers[0] == 1 and workers[-1] > 50
    # Two hours' target: a big corpus is sized to finish in about two hours, a small one on one worker sooner.
    assert "about 2.0 h" in runs[1000] and "min" in runs[1]


def test_input_rate_override_is_for_the_whole_build(capsys):
    out = _dry_run(capsys, 110, TWO_LENGTHS, "--input_mb_per_s_per_vcpu", "1")
    # 110,000 MB at 1 MB/s per vCPU: 30.6 vCPU-hours for both lengths, split 1 : 1.17 between them.
    assert "compute: 31 vCPU-hours" in out and "rate: 1.0 MB" in out and "--input_mb_per_s_per_vcpu" in out
    cost = L.dataflow_cost(110, [(128, 5), (512, 5)], mb_per_s_per_vcpu=1.0)
    assert cost.plans[1].vcpu_hours / cost.plans[0].vcpu_hours == pytest.approx(1.17)
    assert cost.vcpu_hours == pytest.approx(110_000 / 3600)


def test_shard_count_advice_per_length(capsys):
    out = _dry_run(capsys, 20, TWO_LENGTHS + ["--num_shards=30"])
    # 20 GB x 5 x 2.0 = 200 GB at seq 128 and 234 GB at 512 in 30 shards each: too big to sort in memory;
    # 256 MiB shards would be 746 and 872 of them.
    assert "# warning: seq 128: ~6,358 MB per shard" in out and "--num_shards=746 or more" in out
    assert "# warning: seq 512: ~7,439 MB per shard" in out and "--num_shards=872 or more" in out
    # The local_files path merges shards from run files: no in-memory sort, no warning, no shuffle of records.
    local = _dry_run(capsys, 20, TWO_LENGTHS + ["--num_shards=30", "--shuffle=local_files"])
    assert "warning" not in local and "run files: 434 GB" in local and "x 0.45 GiB" in local
    assert "rate: 1.4 MB" in local and "--shuffle=local_files" in local  # 3.0 at 128, 3.0/1.17 at 512, dupe 5
