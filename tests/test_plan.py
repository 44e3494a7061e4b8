"""`bertbeam plan` reproduces the seed's epoch, dupe_factor and Devlin-control arithmetic."""
import json
from pathlib import Path

import pytest

from pipeline import plan

REPO = Path(__file__).resolve().parents[1]
SEED_128 = 405_354_995
SEED_512 = 101_338_748


def _seed_plan():
    phases = [plan.parse_phase("128:900000:2760"), plan.parse_phase("512:100,000:2_760")]
    return plan.plan_schedule(phases, {128: SEED_128, 512: SEED_512}, {128: 2714.6}, corpus_words=18.4e9)


def test_seed_seq128_phase():
    p = _seed_plan().phases[0]
    assert p.phase.examples == 2_484_000_000
    assert round(p.epochs, 1) == 6.1
    assert p.dupe_factor_nearest == 6  # "a dup_factor of 6 is fine"
    assert p.dupe_factor_ceil == 7  # rounding up never re-reads
    # With 6 copies the corpus holds 6 x 405,354,995 = 2,432,129,970 instances (the seed's own summary table
    # shows 2,432,129,972 for its dupe-6 dataset): 51,870,030 examples short of the 900,000 steps.
    assert p.shortfall_nearest == 2_484_000_000 - 6 * SEED_128 == 51_870_030


def test_seed_seq512_phase():
    p = _seed_plan().phases[1]
    assert p.phase.examples == 276_000_000
    assert round(p.epochs, 1) == 2.7
    assert p.dupe_factor_nearest == p.dupe_factor_ceil == 3  # "A dupe_factor of 3 is sufficient"
    assert p.shortfall_nearest == 0
    assert p.wall_seconds is None  # no rate given for seq 512


def test_seed_control_against_devlin():
    report = _seed_plan()
    assert report.total_examples == 2_760_000_000
    assert report.total_epochs_rounded == 8.8  # 6.1 + 2.7
    assert round(report.corpus_ratio, 1) == 5.6  # 18.4B / 3.3B words
    assert round(report.reference_equivalent_epochs) == 49  # 8.8 x 5.6
    assert round(report.total_epochs * report.corpus_ratio) == 49  # unrounded agrees
    # Devlin's own figure the control is read against: 1,000,000 x 256 = 40 epochs of 3.3B words.
    assert plan.DEVLIN_STEPS * plan.DEVLIN_BATCH == 256_000_000 and plan.DEVLIN_EPOCHS == 40


def test_format_plan_text():
    text = plan.format_plan(_seed_plan())
    assert "examples needed : 2,484,000,000" in text and "examples needed : 276,000,000" in text
    assert "epochs          : 6.1 " in text and "epochs          : 2.7 " in text
    assert "dupe_factor     : 6 rounds 6.1 to nearest" in text and "7 (rounding up) is safer" in text
    assert "dupe_factor     : 3 " in text
    assert "8.8 epochs (6.1 + 2.7" in text
    assert "8.8 epochs x 5.6 = 49 reference-corpus epochs" in text
    assert "254.2 h (10.6 days)" in text  # 2.484e9 / 2,714.6 examples/s


def test_main_with_manifests(tmp_path, capsys):
    # The seed's corpus1_128 manifest (counts.default, dupe_factor 3) gives its 405,354,995 per epoch.
    seed_manifest = {"counts": {"default": {"num_documents": 40810085, "num_instances": 1216064986}},
                     "max_seq_length": 128, "dupe_factor": 3}
    (tmp_path / "c128").mkdir()
    (tmp_path / "c128" / "manifest.json").write_text(json.dumps(seed_manifest))
    ours = {"format": "bertbeam.pretraining.v1", "counts": {"train": {"num_instances": SEED_512 * 2}},
            "max_seq_length": 512, "dupe_factor": 2}
    (tmp_path / "m512.json").write_text(json.dumps(ours))
    rc = plan.main(["--manifest", str(tmp_path / "c128"), "--manifest", str(tmp_path / "m512.json"),
                    "--phase", "128:900000:2760", "--phase", "512:100000:2760", "--corpus_words", "18.4e9",
                    "--examples_per_second", "2714.6", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert round(out["phases"][0]["instances_per_epoch"]) == SEED_128
    assert [p["dupe_factor_ceil"] for p in out["phases"]] == [7, 3]
    assert [p["examples"] for p in out["phases"]] == [2_484_000_000, 276_000_000]
    assert out["total_epochs_rounded"] == 8.8
    assert out["total_wall_seconds"] == pytest.approx(2_760_000_000 / 2714.6)


def test_manifests_of_one_length_add_up():
    m = {"counts": {"train": {"num_instances": 300}}, "max_seq_length": 128, "dupe_factor": 3}
    assert plan.corpus_sizes([("a", m), ("b", m)], []) == {128: 200.0}
    assert plan.corpus_sizes([("a", m)], [(128, 50.0)]) == {128: 50.0}  # explicit size wins


def test_phases_from_configs_follow_start_step(capsys):
    # The real T1 run: steps 1-4 as run, from the config files.
    files = [str(REPO / "training" / "configs" / f"t1_mbert_step{i}.yaml") for i in (1, 2, 3, 4)]
    phases = [ph for f in files for ph in plan.read_phases_file(f)]
    assert [(p.max_seq_length, p.steps, p.batch_size) for p in phases] == [
        (128, 700_000, 2760), (512, 300_000, 384), (512, 200_000, 384), (128, 800_000, 2640)]
    args = [a for f in files for a in ("--phases_file", f)]
    assert plan.main(args + ["--instances_per_epoch", f"128={SEED_128}",
                             "--instances_per_epoch", f"512={SEED_512}"]) == 0
    text = capsys.readouterr().out
    assert "phase 1 (t1_mbert_step1.yaml)" in text
    assert "seq 128: 9.98 epochs over all its phases" in text  # 1.932e9 + 2.112e9 examples


def test_phases_file_list_forms(tmp_path):
    (tmp_path / "p.yaml").write_text("phases:\n  - 128:900000:2760\n"
                                     "  - {max_seq_length: 512, steps: 100000, train_batch_size: 2760}\n")
    (tmp_path / "p.json").write_text(json.dumps([{"max_seq_length": 128, "steps": 10, "batch_size": 4}]))
    assert [p.examples for p in plan.read_phases_file(str(tmp_path / "p.yaml"))] == [2_484_000_000, 276_000_000]
    assert plan.read_phases_file(str(tmp_path / "p.json"))[0].examples == 40


@pytest.mark.parametrize("bad", ["128:900000", "128:x:2760", "0:10:10", "128:1.5:10"])
def test_bad_phase(bad):
    with pytest.raises(plan.PlanError):
        plan.parse_phase(bad)


def test_missing_corpus_size_is_a_clear_error(capsys):
    assert plan.main(["--phase", "512:10:10", "--instances_per_epoch", "128=1000"]) == 2
    assert "no corpus size for seq 512" in capsys.readouterr().err


def test_rounding():
    assert [plan.round_half_up(x) for x in (6.128, 2.72, 2.5, 0.2)] == [6, 3, 3, 0]
    report = plan.plan_phase(plan.Phase(128, 10, 10), 1000.0, None)  # 0.1 epoch still needs 1 copy
    assert report.dupe_factor_nearest == report.dupe_factor_ceil == 1
    exact = plan.plan_phase(plan.Phase(128, 300, 10), 1000.0, None)  # exactly 3 epochs -> 3, not 4
    assert exact.dupe_factor_ceil == 3


def test_an_absurd_dupe_factor_is_flagged():
    """A tiny corpus for a real phase (issue 21: `dupe_factor 2,660,004` suggested without a word)."""
    tiny = plan.plan_schedule([plan.parse_phase("128:10000:256")], {128: 1_000}, {})
    text = plan.format_plan(tiny)
    assert tiny.phases[0].dupe_factor_ceil == 2_560
    assert "WARNING         : dupe_factor 2,560 is absurd" in text
    assert "WARNING" not in plan.format_plan(_seed_plan())  # the seed's 6-7 and 3 are fine
