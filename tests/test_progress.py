"""Progress records, their aggregation and the lines a build prints (pipeline/progress.py)."""
import io
import json
import os
import time

import pytest

from pipeline import progress


def test_format_duration_and_eta():
    assert progress.format_duration(None) == "?"
    assert progress.format_duration(9.6) == "10s"
    assert progress.format_duration(185) == "3m05s"
    assert progress.format_duration(3720) == "1h02m"
    assert progress.eta_seconds(0, 100, 5) is None
    assert progress.eta_seconds(25, 100, 10) == pytest.approx(30.0)
    assert progress.eta_seconds(100, 100, 10) == 0.0


def test_build_line_names_every_figure():
    line = progress.build_line({"bytes": 5e6, "documents": 1200, "instances": 40000}, 20_000_000, 10.0)
    assert line.startswith("[build 10s] input 5.0/20.0 MB (25%)")
    assert "documents 1,200" in line and "instances 40,000" in line and "4,000 instances/s" in line
    assert line.endswith("ETA 30s")
    assert progress.build_line({"bytes": 5e6}, 20_000_000, 10.0, eta=3.0).endswith("ETA 3s")
    writing = progress.build_line({"bytes": 2e7, "shards": 1}, 20_000_000, 10.0, num_shards=4)
    assert writing.endswith("shards written 1/4")
    train = progress.train_line(step=250, last_step=1000, examples_per_s=512.0, eta=150.0, elapsed=50.0)
    assert train == "[train 50s] step 250/1,000  512.0 examples/s  ETA 2m30s"
    text = progress.text_line("vocab", 1, 2, 5e6, 10e6, 1000, 10.0)
    assert text == "[vocab 10s] pass 1/2: text 5.0/10.0 MB (50%)  1,000 sentences  100 sentences/s  ETA 30s"
    assert progress.text_line("vocab", 2, 2, 10e6, 10e6, 9, 9.0).endswith("reading done; training")


def test_aggregate_sums_counts_and_keeps_the_furthest_position_per_range():
    records = [{"r": "a@0", "b": 100, "d": 2, "i": 10, "s": {"tokenize": 0.5}},
               {"r": "a@0", "b": 300, "d": 3, "i": 20, "s": {"tokenize": 0.25, "read": 0.1}},
               {"r": "a@0", "b": 200},  # a retried bundle's older position does not move progress back
               {"r": "b@0", "b": 50, "d": 1, "i": 5},
               {"c0": 0.8, "p": 11}, {"c0": 0.6, "p": 12},
               {"s": {"write_shards": 1.0}, "w": 1}, {"w": 1}]
    totals = progress.aggregate(records)
    assert (totals["bytes"], totals["documents"], totals["instances"]) == (350, 6, 35)
    assert totals["stages"] == {"tokenize": 0.75, "read": 0.1, "write_shards": 1.0}
    assert totals["startup"] == [0.6, 0.8] and totals["shards"] == 2


def test_read_records_leaves_a_half_written_record_for_later(tmp_path):
    path = tmp_path / "1.jsonl"
    path.write_bytes(b'{"d": 1}\n{"d": 2')
    offsets, into = {}, []
    progress.read_records(str(tmp_path), offsets, into)
    assert into == [{"d": 1}]
    with open(path, "ab") as f:
        f.write(b'}\n{"d": 3}\n')
    progress.read_records(str(tmp_path), offsets, into)
    assert into == [{"d": 1}, {"d": 2}, {"d": 3}]
    progress.read_records(str(tmp_path / "missing"), offsets, into)  # no folder: nothing, no error


def test_recorder_writes_only_when_a_folder_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV_DIR, raising=False)
    off = progress.Recorder()
    assert not off.enabled
    off.record("a@0", 10, 1, 2)  # no-op, no error
    monkeypatch.setenv(progress.ENV_DIR, str(tmp_path))
    rec = progress.Recorder()
    assert rec.first_document() is not None and rec.first_document() is None
    rec.record("a@0", 10, documents=1, instances=2, stages={"tokenize": 0.5, "read": 0.0})
    (written,) = list(tmp_path.iterdir())
    lines = [json.loads(x) for x in written.read_text().splitlines()]
    assert lines[0]["p"] == os.getpid() and lines[1] == {"r": "a@0", "b": 10, "d": 1, "i": 2,
                                                         "s": {"tokenize": 0.5}}


def test_stage_clock_measures_cpu_per_stage():
    clock = progress.StageClock()
    with clock("tokenize"):
        sum(i * i for i in range(200_000))
    clock.add("read", 0.5)
    spent = clock.take()
    assert spent["tokenize"] > 0 and spent["read"] == 0.5
    assert clock.take() == {}


def test_stage_table_lists_stages_in_order_with_shares():
    table = progress.stage_table({"tokenize": 1.0, progress.OTHER: 0.5, "build_instances": 2.0,
                                  progress.STARTUP: 0.5}, wall=8.0)
    names = [line.split("  ")[0].strip() for line in table.splitlines()[1:-1]]
    assert names == [progress.STARTUP, "tokenize", "build_instances", progress.OTHER]
    assert "25.0%" in table and "total" in table and "(wall 8.0 s, 0.50 cores busy)" in table


def test_build_progress_prints_lines_while_running_and_a_table_at_the_end(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV_DIR, raising=False)
    out = io.StringIO()
    folder = tmp_path / "progress"
    watch = progress.BuildProgress(total_bytes=1000, folder=str(folder), interval=0.05, stream=out)
    with watch:
        assert os.environ[progress.ENV_DIR] == str(folder)
        worker = progress.Recorder()  # as a worker process would, from the environment
        worker.first_document()
        worker.record("f@0", 400, documents=4, instances=40, stages={"tokenize": 0.2})
        time.sleep(0.3)
    assert progress.ENV_DIR not in os.environ
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and all(x.startswith("[build ") for x in lines)
    assert "input 0.0/0.0 MB (40%)" in lines[-1] and "documents 4" in lines[-1] and "instances 40" in lines[-1]
    table = watch.finish()
    assert "tokenize" in table and progress.STARTUP in table and "worker start-up" in table
    assert not folder.exists()


def test_reporter_survives_a_failing_line():
    out = io.StringIO()

    def broken(_):
        raise RuntimeError("boom")
    rep = progress.Reporter(broken, interval=0.02, stream=out).start()
    time.sleep(0.1)
    rep.stop()
    assert "[progress] unavailable: boom" in out.getvalue()


def test_text_progress_counts_each_pass():
    out = io.StringIO()
    watch = progress.TextProgress(total_bytes=12, passes=2, interval=0.02, stream=out).start()
    assert list(watch.wrap(["abc", "de"])) == ["abc", "de"]
    assert (watch.pass_index, watch.bytes, watch.sentences) == (1, 7, 2)
    list(watch.wrap(iter(["abcdefghijk"])))
    time.sleep(0.1)
    watch.stop()
    assert (watch.pass_index, watch.bytes, watch.sentences) == (2, 12, 3)
    assert "pass 2/2: text 0.0/0.0 MB (100%)  3 sentences" in out.getvalue().splitlines()[-1]


def test_train_progress_rate_and_eta_leave_out_compilation():
    watch = progress.TrainProgress(last_step=1000, start_step=100, batch_size=8, interval=10, stream=io.StringIO())
    assert watch._line(5.0, now=1005.0).endswith("compiling / waiting for the first step")
    watch.step = 120
    first = watch._line(20.0, now=1020.0)  # first step seen: no rate yet
    assert first.startswith("[train 20s] step 120/1,000") and first.endswith("ETA ?")
    watch.step = 320
    line = watch._line(22.0, now=1022.0)  # 200 steps in 2 s = 100 steps/s x 8 examples
    assert line == "[train 22s] step 320/1,000  800.0 examples/s  ETA 7s"


def test_quiet_env(monkeypatch):
    monkeypatch.setenv("BERTBEAM_QUIET", "1")
    assert progress.quiet_from_env()
    monkeypatch.setenv("BERTBEAM_QUIET", "0")
    assert not progress.quiet_from_env()


def test_build_eta_leaves_out_the_start_up(tmp_path, monkeypatch):
    """10 s of worker start-up, then 10 MB in 10 s: 10 MB to go is 10 s, not the 20 s the average gives."""
    monkeypatch.delenv(progress.ENV_DIR, raising=False)
    watch = progress.BuildProgress(total_bytes=30_000_000, folder=str(tmp_path), interval=100,
                                   stream=io.StringIO())
    rec = progress.Recorder(str(tmp_path))
    assert watch._line(5.0).endswith("ETA ?")  # nothing read yet
    rec.record("f@0", 10_000_000)
    assert watch._line(10.0).endswith("ETA 20s")  # first progress: the average is all there is
    rec.record("f@0", 20_000_000)
    assert watch._line(20.0).endswith("ETA 10s")


def test_startup_parts_line_names_each_step_in_order():
    from pipeline.progress import startup_parts_line
    assert startup_parts_line([]) == ""
    assert startup_parts_line([("imports", 0.304), ("tokenizer", 0.01)]) == \
        "\nstart-up (launcher): imports 0.30, tokenizer 0.01"
