"""The same build on the DirectRunner (local-files shuffle), Beam's DaskRunner (2 worker processes, runner
shuffle) and Beam's PortableRunner with an external SDK-harness worker pool: wall time and whether every
shard is byte-identical. Defaults: all of en_books_dev, --max_seq_length=128,512, multi-range, multi-bucket.

    ./run_local.sh bench bench/bench_runner_identity.py [--input_file F] [--vocab_file V]
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))


def _shards(out: Path):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("train-*"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", default=str(SHARED / "data/corpora/en_books_dev.txt"))
    p.add_argument("--vocab_file", default=str(SHARED / "data/vocab/bert_base_uncased/vocab.txt"))
    p.add_argument("--flags", default="--max_seq_length=128,512 --max_predictions_per_seq=20,77 --dupe_factor=3 "
                                      "--num_shards=8 --input_split_mb=0.1 --random_next_bucket_size=16")
    args = p.parse_args()
    from distributed import LocalCluster  # pylint: disable=import-outside-toplevel
    from pipeline import build  # pylint: disable=import-outside-toplevel

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=str(REPO))
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    runners = {
        "DirectRunner (in_memory, local_files)": ["--direct_running_mode=in_memory"],
        "DaskRunner (2 processes, runner shuffle)": ["--runner=DaskRunner", "--allow_local_paths",
                                                     f"--dask_client_address={cluster.scheduler_address}"],
        "PortableRunner (EXTERNAL pool, runner shuffle)": ["--runner=PortableRunner", "--job_endpoint=embed",
                                                           "--environment_type=EXTERNAL",
                                                           f"--environment_config=localhost:{port}",
                                                           "--allow_local_paths"],
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench_runner_identity_") as tmp:
            ref = None
            for i, (name, extra) in enumerate(runners.items()):
                out = Path(tmp) / f"out{i}"
                t = time.time()
                manifests = build.run_all([f"--input_file={args.input_file}", f"--vocab_file={args.vocab_file}",
                                           f"--output_dir={out}", *args.flags.split(), *extra])
                wall = time.time() - t
                shards = _shards(out)
                ref = ref or shards
                counts = [m["counts"]["train"]["num_instances"] for m in manifests]
                print(f"{name:<48} {wall:6.1f} s  instances {counts}  {len(shards)} shards  "
                      f"identical to DirectRunner: {shards == ref}", flush=True)
    finally:
        cluster.close()
        pool.kill()
        pool.wait()


if __name__ == "__main__":
    main()
