"""Files opened under the output folder by a `bertbeam build` on Beam's DaskRunner (a local Dask cluster of
2 worker processes), counted across every process with a Python audit hook (sitecustomize on PYTHONPATH).

The global shuffle must cost O(shards + ranges) file operations, not buckets x shards: issue 11 measured
1,154 opens for 64 shards on the old run-file shuffle; the goal is <= 3 x shards + 60.

    ./run_local.sh bench bench/bench_runner_files.py [--shards 64,256] [--repo DIR_OF_OTHER_CHECKOUT]

--repo measures another checkout (e.g. main before the change) the same way.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

SITECUSTOMIZE = textwrap.dedent('''
    import os, sys
    _PREFIX = os.environ.get("BENCH_OPEN_PREFIX")
    _LOG = os.environ.get("BENCH_OPEN_LOG")
    _busy = [False]
    def _hook(event, args):
        if event != "open" or _busy[0] or not _PREFIX or not args or not isinstance(args[0], str):
            return
        path = os.path.abspath(args[0])
        if not path.startswith(_PREFIX):
            return
        _busy[0] = True
        try:
            fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, (path + "\\n").encode("utf-8", "replace"))
            os.close(fd)
        finally:
            _busy[0] = False
    if _PREFIX and _LOG:
        sys.addaudithook(_hook)
''')

DRIVER = textwrap.dedent('''
    import json, sys
    from distributed import LocalCluster
    if __name__ == "__main__":
        argv = json.loads(sys.argv[1])
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
        try:
            from pipeline import build
            manifests = build.run_all(argv + [f"--dask_client_address={cluster.scheduler_address}"])
            print(json.dumps([len(m["shards"]) for m in manifests]))
        finally:
            cluster.close()
''')


def measure(repo: Path, corpus: str, vocab: str, shards: int, tmp: Path, new_flags: bool) -> dict:
    out = tmp / f"out_{shards}"
    log = tmp / f"opens_{shards}.log"
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    argv = [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", f"--num_shards={shards}",
            "--random_next_bucket_size=8", "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"]
    if new_flags:
        argv.append("--allow_local_paths")
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{repo}", BENCH_OPEN_PREFIX=str(out) + "/",
               BENCH_OPEN_LOG=str(log), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argv)], env=env, capture_output=True, text=True,
                          cwd=str(repo))  # `-c` puts the working folder first on sys.path
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    paths = log.read_text().splitlines() if log.exists() else []
    kinds = collections.Counter()
    for p in paths:
        name = p[len(str(out)) + 1:]
        if "_bertbeam_tmp/" in name:
            kinds["run files (_bertbeam_tmp)"] += 1
        elif "train-" in name:
            kinds["shards (incl. temp)"] += 1
        else:
            kinds["manifest, markers, probe"] += 1
    outputs = sum(1 for p in out.rglob("*") if p.is_file())
    return {"shards": shards, "opens": len(paths), "output_files": outputs, "by_kind": dict(kinds),
            "goal": 3 * shards + 60}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", default=str(SHARED / "data/corpora/en_books_dev.txt"))
    p.add_argument("--vocab_file", default=str(SHARED / "data/vocab/bert_base_uncased/vocab.txt"))
    p.add_argument("--shards", default="64,256")
    p.add_argument("--repo", default=str(REPO), help="checkout to measure (default: this one)")
    p.add_argument("--old_flags", action="store_true", help="the checkout predates --allow_local_paths")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_runner_files_") as tmp:
        for shards in [int(s) for s in args.shards.split(",")]:
            r = measure(Path(args.repo), args.input_file, args.vocab_file, shards, Path(tmp), not args.old_flags)
            print(f"{Path(args.repo).name}: DaskRunner, 2 processes, {shards} shards, 8-document buckets: "
                  f"{r['opens']} files opened under the output folder for {r['output_files']} output files "
                  f"(goal <= {r['goal']}); {r['by_kind']}", flush=True)


if __name__ == "__main__":
    main()
