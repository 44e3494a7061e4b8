"""`./run_local.sh` installs what each command needs (issue 21 item 1): the demo and the pipeline subcommands
the project alone (~530 MB), train/evaluate/export the `train` extra, `test` and `bench` the `dev` extra
(~4.4 GB); the stamp records the extras so a later command that needs more installs it.

The script runs for real on a copy of itself, with a stand-in Python whose virtualenv's `python` and
`bertbeam` only log their arguments: nothing is installed."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_PY = """#!/bin/sh
# Stand-in for python3: `-m venv DIR` makes DIR/bin/{python,bertbeam} that log their arguments.
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  for exe in python bertbeam; do
    printf '#!/bin/sh\\necho "%s $*" >> "$RUN_LOCAL_LOG"\\n' "$exe" > "$3/bin/$exe"
    chmod +x "$3/bin/$exe"
  done
  exit 0
fi
exit 1
"""


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copy(REPO / "run_local.sh", root / "run_local.sh")
    shutil.copy(REPO / "setup.py", root / "setup.py")
    os.utime(root / "setup.py", (1_000_000_000, 1_000_000_000))  # older than any stamp written below
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_PY)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root, fake, tmp_path / "log"


def _run(checkout, *args):
    """The log lines of one `./run_local.sh ARGS` (pip installs and the command run) and its stderr."""
    root, fake, log = checkout
    log.write_text("")
    env = dict(os.environ, PYTHON=str(fake), RUN_LOCAL_LOG=str(log))
    proc = subprocess.run(["bash", str(root / "run_local.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    return [x for x in lines if "install -q --upgrade pip" not in x], proc.stderr


def test_demo_installs_the_project_alone_and_test_then_adds_dev(checkout):
    lines, err = _run(checkout)
    assert lines == ["python -m pip install -q -e .", "python -m pipeline.demo"]
    assert "pip install -e '.'" in err
    lines, _ = _run(checkout, "inspect", "output/demo/dataset")  # already there: nothing installed
    assert lines == ["bertbeam inspect output/demo/dataset"]
    lines, err = _run(checkout, "test", "-x")
    assert lines == ["python -m pip install -q -e .[dev]", "python -m pytest -q -x tests"]
    assert "dev extra" in err
    lines, _ = _run(checkout, "train", "--config", "c.yaml")  # dev holds train
    assert lines == ["bertbeam train --config c.yaml"]


def test_training_subcommands_install_the_train_extra_on_demand(checkout):
    assert _run(checkout, "vocab", "--help")[0] == ["python -m pip install -q -e .", "bertbeam vocab --help"]
    lines, err = _run(checkout, "train", "--help")
    assert lines == ["python -m pip install -q -e .[train]", "bertbeam train --help"]
    assert "train extra" in err
    assert _run(checkout, "bertbeam", "export", "--help")[0] == ["bertbeam export --help"]
    assert _run(checkout, "evaluate", "--help")[0] == ["bertbeam evaluate --help"]
    # The extras installed so far stay in the install that adds dev.
    assert _run(checkout, "test")[0] == ["python -m pip install -q -e .[train,dev]", "python -m pytest -q tests"]


def test_a_changed_setup_py_reinstalls_the_same_extras(checkout):
    root = checkout[0]
    _run(checkout, "train", "--help")
    assert _run(checkout, "plan", "--help")[0] == ["bertbeam plan --help"]
    os.utime(root / "setup.py", None)  # now: newer than the stamp
    os.utime(root / ".venv" / ".bertbeam-installed", (1_000_000_000, 1_000_000_000))
    assert _run(checkout, "plan", "--help")[0] == ["python -m pip install -q -e .[train]", "bertbeam plan --help"]


def test_a_stamp_from_before_extras_were_recorded_means_dev(checkout):
    """The earlier run_local.sh installed `dev` and touched an empty stamp: no reinstall for `test`."""
    root = checkout[0]
    _run(checkout)
    (root / ".venv" / ".bertbeam-installed").write_text("")
    assert _run(checkout, "test")[0] == ["python -m pytest -q tests"]


def test_a_training_subcommand_without_the_train_extra_says_which_to_install(monkeypatch, capsys):
    """`.venv/bin/bertbeam train` after the default (pipeline-only) install: one line naming the extra."""
    from pipeline import main as cli
    from training import input_pipeline

    def no_tensorflow():
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    monkeypatch.setattr(input_pipeline, "tf_module", no_tensorflow)
    assert cli.main(["train", "--pretrain_data=x"]) == 2
    err = capsys.readouterr().err
    assert "bertbeam train: error: needs the `train` extra (tensorflow is not installed)" in err
    assert "pip install -e '.[train]'" in err and "Traceback" not in err
