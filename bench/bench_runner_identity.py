"""The same build on the DirectRunner (reference), Beam's DaskRunner (a local cluster of 2 worker processes) and
Beam's PortableRunner with an external SDK-harness worker pool, repeated, optionally on a loaded machine: wall
time, load average and whether every shard is byte-identical to the DirectRunner's.

    ./run_local.sh bench bench/bench_runner_identity.py [--input_file 'DIR/*.txt'] [--repeats 3] [--load 20]
        [--shuffle auto|runner|local_files] [--runners dask,portable]

`--load N` starts N busy shell loops (`while :; do :; done`, niced, each ended by `timeout` after
`--load_max_s`) for the whole bench, so the builds run at a load average of about N + 2 on a 2-core machine.
Defaults: all of en_books_dev, --max_seq_length=128,512, multi-range, multi-bucket.
"""
import argparse
import hashlib
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


def _digests(out: Path):
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("train-*"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_load(n: int, max_s: int):
    return [subprocess.Popen(["timeout", str(max_s), "nice", "-n", "5", "sh", "-c", "while :; do :; done"])
            for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", default=str(SHARED / "data/corpora/en_books_dev.txt"))
    p.add_argument("--vocab_file", default=str(SHARED / "data/vocab/bert_base_uncased/vocab.txt"))
    p.add_argument("--flags", default="--max_seq_length=128,512 --max_predictions_per_seq=20,77 --dupe_factor=3 "
                                      "--num_shards=8 --input_split_mb=0.1 --random_next_bucket_size=16")
    p.add_argument("--repeats", type=int, default=1, help="runs per distributed runner")
    p.add_argument("--runners", default="dask,portable")
    p.add_argument("--shuffle", default="auto")
    p.add_argument("--load", type=int, default=0, help="busy loops to run beside the builds")
    p.add_argument("--load_max_s", type=int, default=3600, help="each busy loop ends after this long")
    args = p.parse_args()
    from distributed import LocalCluster  # pylint: disable=import-outside-toplevel
    from pipeline import build  # pylint: disable=import-outside-toplevel

    port = _free_port()
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=str(REPO))
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    extra = {
        "dask": ["--runner=DaskRunner", "--allow_local_paths", f"--dask_client_address={cluster.scheduler_address}"],
        "portable": ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
                     f"--environment_config=localhost:{port}", "--allow_local_paths"],
    }
    load = _start_load(args.load, args.load_max_s)
    failures = 0
    try:
        with tempfile.TemporaryDirectory(prefix="bench_runner_identity_") as tmp:
            def run(name, flags, i):
                out = Path(tmp) / f"{name}{i}"
                started = time.time()
                try:
                    manifests = build.run_all([f"--input_file={args.input_file}", f"--vocab_file={args.vocab_file}",
                                               f"--output_dir={out}", "--quiet", *args.flags.split(), *flags])
                    result = (_digests(out), [m["counts"]["train"]["num_instances"] for m in manifests],
                              manifests[0]["shuffle"])
                except Exception as e:  # reported as a failed run, the bench goes on
                    result = (None, f"{type(e).__name__}: {str(e)[:300]}", "-")
                subprocess.run(["rm", "-rf", str(out)], check=False)
                return result, time.time() - started, os.getloadavg()[0]

            (ref, counts, shuffle), wall, loadavg = run("direct", ["--direct_running_mode=in_memory"], 0)
            print(f"{'DirectRunner (in_memory)':<44} {wall:7.1f} s  load {loadavg:5.1f}  shuffle {shuffle:<11} "
                  f"instances {counts}  {len(ref)} shards (reference)", flush=True)
            for name in args.runners.split(","):
                for i in range(args.repeats):
                    (digests, counts, shuffle), wall, loadavg = run(
                        name, extra[name] + [f"--shuffle={args.shuffle}"], i + 1)
                    same = digests == ref
                    failures += not same
                    print(f"{name + ' run ' + str(i + 1):<44} {wall:7.1f} s  load {loadavg:5.1f}  shuffle "
                          f"{shuffle:<11} instances {counts}  identical to DirectRunner: {same}", flush=True)
    finally:
        for proc in load:
            proc.terminate()  # `timeout` passes SIGTERM on to its loop (a SIGKILL would orphan the loop)
        cluster.close()
        pool.kill()
        pool.wait()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
