"""`bertbeam launch`: exact gcloud commands for a v3-8 and a v3-256 pod, Dataflow argv, staged package contents."""
import os
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
    cost = L.dataflow_cost(110, dupe_factor=10, target_hours=2, vcpus=4, mb_per_s_per_vcpu_at_dupe5=1.4)
    # 110,000 MB at 1.4 x 5/10 = 0.7 MB/s per vCPU: 157,143 vCPU-seconds = 43.7 vCPU-hours.
    assert round(cost.vcpu_hours, 1) == 43.7 and cost.workers == 6 and cost.machine_type == "n1-standard-4"
    assert cost.output_gb == 2200 and cost.shuffle_gb == 2310 and cost.shard_mb <= 256
    assert L.main(["dataflow", "--dry_run", "--corpus_gb", "110", "--", "--dupe_factor=5"]) == 0
    out = capsys.readouterr().out
    # Default rate 3.0 MB/s per vCPU at dupe 5: 110,000 MB / 3.0 = 36,667 vCPU-seconds = 10 vCPU-hours, and
    # 110,000 MB in 2 h at 3.0 MB/s x 4 vCPUs = 1.3 workers.
    assert "10 vCPU-hours" in out and "--max_num_workers 2" in out and "shuffle: 1,210 GB" in out
    # Sorting a ~256 MB shard in memory (runner shuffle) sizes the machine, not the 0.45 GiB of building.
    assert "x 0.70 GiB" in out and "--machine_type n1-standard-4" in out
    assert L.peak_rss_with_shard_sort(0.45, 64) == 0.45
    assert L.peak_rss_with_shard_sort(0.45, 256) == pytest.approx(0.35 + 1.4 / 4)
    assert L.main(["dataflow", "--corpus_gb", "110"]) == 2  # a real launch needs the project
