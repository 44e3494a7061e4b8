"""The README's `bertbeam build` / `bertbeam vocab` commands, as written (issue 21 item 3): every flag is one the
command knows, a command that segments text (`--input_format text|jsonl`) says which language, and the Tibetan
build runs on a shrunk volume with Tibetan sentence rules (no "no sentence segmentation rules" warning)."""
import json
import logging
import re
import shlex
from pathlib import Path
from typing import Dict, List

import pytest

from pipeline import build
from pipeline import flags as flaglib

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(subcommand: str) -> List[List[str]]:
    """The arguments of each `bertbeam SUBCOMMAND ...` line of the README's bash blocks: continuation lines
    joined, optional `[...]` parts kept when they hold flags only, `$VAR`s of the block's `VAR=value` lines
    expanded."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S):
        variables: Dict[str, str] = {}
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", line)
            if assignment:
                variables[assignment.group(1)] = assignment.group(2)
            if not line.startswith(f"bertbeam {subcommand} "):
                continue
            line = re.sub(r"\[([^\]]*)\]", _optional, line)
            line = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: variables.get(m.group(1), m.group(0)), line)
            commands.append(shlex.split(line)[2:])
    return commands


def _optional(match: "re.Match") -> str:
    """`[--overwrite]`, `[--runner=X --direct_num_workers=2]`: kept (all flags); `[--a=N | --b=1]` and
    `[words]`: dropped."""
    parts = match.group(1).split()
    return f" {match.group(1)} " if parts and all(p.startswith("--") for p in parts) else " "


def _flag(argv: List[str], name: str):
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def test_readme_has_the_build_and_vocab_commands():
    builds = readme_commands("build")
    assert len(builds) >= 3 and any("kangyur" in (_flag(a, "input_file") or "") for a in builds)
    assert any(_flag(a, "input_format") == "jsonl" for a in readme_commands("vocab"))


@pytest.mark.parametrize("argv", readme_commands("build"), ids=lambda a: (_flag(a, "input_file") or "-")[-30:])
def test_readme_build_commands_use_known_flags(argv):
    _, beam_args = build.parse_args(argv)
    assert flaglib.beam_unknown_args_message(beam_args, build.build_parser()) is None


@pytest.mark.parametrize("subcommand", ["build", "vocab"])
def test_readme_commands_that_segment_text_name_the_language(subcommand):
    """A text/jsonl corpus is cut into sentences with --lang's rules; without it the generic rules apply
    (a warning, and a different dataset)."""
    for argv in readme_commands(subcommand):
        if _flag(argv, "input_format") in ("text", "jsonl"):
            assert _flag(argv, "lang"), f"bertbeam {subcommand} {shlex.join(argv)}"
            if "tibetan" in (_flag(argv, "input_file") or ""):
                assert _flag(argv, "lang") == "bo", f"bertbeam {subcommand} {shlex.join(argv)}"


def test_readme_tibetan_build_runs_as_written_on_a_shrunk_volume(tmp_path, kangyur_spm, caplog):
    """The README's full Tibetan build (the seed's ALBERT flags), with its corpus cut to 30,000 characters a
    work and a small model trained here: Tibetan sentence rules, no generic-rules warning."""
    texts, model = kangyur_spm
    argv = next(a for a in readme_commands("build")
                if "kangyur" in (_flag(a, "input_file") or "") and _flag(a, "spm_model_file") == "bo.model")
    corpus = tmp_path / "kangyur.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"w{i}", "text": t[:30_000]}, ensure_ascii=False) + "\n"
                              for i, t in enumerate(texts)), encoding="utf-8")
    out = tmp_path / "bo128"
    replace = {"input_file": str(corpus), "spm_model_file": str(model), "output_dir": str(out)}
    run = [f"--{arg[2:].split('=', 1)[0]}={replace[arg[2:].split('=', 1)[0]]}"
           if arg.startswith("--") and arg[2:].split("=", 1)[0] in replace else arg for arg in argv]
    caplog.set_level(logging.WARNING)
    assert build.main(run + ["--quiet"]) == 0
    assert "no sentence segmentation rules" not in caplog.text
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["lang"] == "bo" and manifest["pairing"] == "none"
