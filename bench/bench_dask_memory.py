"""Peak RSS and CPU per MB of Beam's DaskRunner builds as the corpus grows, against the local DirectRunner.

For each scale (copies of en_books_dev under distinct names: scale 1 = `--base_copies` copies), a fresh local Dask
cluster of 2 single-threaded worker processes builds the corpus; the bench prints each worker's peak RSS (its
own getrusage high-water mark, read on the worker), the workers' CPU-seconds per MB of input and, with
`--compare_local`, the same build on the DirectRunner (in_memory, local-files shuffle) in the same run.

    ./run_local.sh bench bench/bench_dask_memory.py [--scales 1,4,8] [--shuffle auto|runner|local_files]
"""
import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))
FLAGS = "--max_seq_length=128,512 --max_predictions_per_seq=20,77 --dupe_factor=5 --quiet"


def _peak_rss_mib() -> float:
    """This process's peak RSS in MiB (run on a Dask worker through Client.run)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_corpus(folder: Path, source: Path, copies: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        shutil.copyfile(source, folder / f"books_{i:04d}.txt")
    return sum(p.stat().st_size for p in folder.iterdir())


def _argv(corpus: Path, vocab: str, out: Path, flags: str, extra):
    return [f"--input_file={corpus}/*.txt", f"--vocab_file={vocab}", f"--output_dir={out}", *flags.split(), *extra]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(SHARED / "data/corpora/en_books_dev.txt"))
    p.add_argument("--vocab_file", default=str(SHARED / "data/vocab/bert_base_uncased/vocab.txt"))
    p.add_argument("--base_copies", type=int, default=20, help="copies of --source at scale 1 (20: 17.7 MB)")
    p.add_argument("--scales", default="1,4,8")
    p.add_argument("--shuffle", default="auto")
    p.add_argument("--flags", default=FLAGS)
    p.add_argument("--compare_local", action="store_true", help="also build each scale on the DirectRunner")
    p.add_argument("--workdir", default=None, help="where corpora and outputs go (default: a temporary folder)")
    args = p.parse_args()
    from distributed import Client, LocalCluster  # pylint: disable=import-outside-toplevel
    from pipeline import build  # pylint: disable=import-outside-toplevel
    from pipeline.dask_watch import process_cpu_seconds  # pylint: disable=import-outside-toplevel

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_dask_memory_"))
    rows = []
    base_rss = None
    for scale in [int(s) for s in args.scales.split(",")]:
        corpus = work / f"corpus_x{scale}"
        mb = _write_corpus(corpus, Path(args.source), args.base_copies * scale) / 1e6
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                               memory_limit=0)
        try:
            with Client(cluster.scheduler_address) as client:
                cpu0 = sum(client.run(process_cpu_seconds).values())
                out = work / f"dask_x{scale}"
                started = time.time()
                manifests = build.run_all(_argv(corpus, args.vocab_file, out, args.flags, [
                    "--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}",
                    "--allow_local_paths", f"--shuffle={args.shuffle}"]))
                wall = time.time() - started
                cpu = sum(client.run(process_cpu_seconds).values()) - cpu0
                rss = max(client.run(_peak_rss_mib).values())
        finally:
            cluster.close()
        base_rss = base_rss or rss
        row = (f"x{scale:<3} {mb:7.1f} MB  shuffle {manifests[0]['shuffle']:<11}  wall {wall:6.1f} s  "
               f"worker CPU {cpu:7.1f} s = {cpu / mb:5.2f} CPU-s/MB  peak RSS per worker {rss:6.0f} MiB "
               f"({rss / base_rss:.2f}x of x{args.scales.split(',')[0]})  instances "
               f"{[m['counts']['train']['num_instances'] for m in manifests]}")
        shutil.rmtree(out, ignore_errors=True)
        if args.compare_local:
            local_out = work / f"local_x{scale}"
            before = process_cpu_seconds()
            build.run_all(_argv(corpus, args.vocab_file, local_out, args.flags, ["--direct_running_mode=in_memory"]))
            local_cpu = process_cpu_seconds() - before
            row += f"\n      DirectRunner in_memory: {local_cpu:7.1f} CPU-s = {local_cpu / mb:5.2f} CPU-s/MB; " \
                   f"Dask/local {cpu / local_cpu:.2f}x"
            shutil.rmtree(local_out, ignore_errors=True)
        shutil.rmtree(corpus, ignore_errors=True)
        print(row, flush=True)
        rows.append(row)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
