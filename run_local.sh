#!/usr/bin/env bash
# bertbeam local entry point. Each command installs into .venv only what it needs:
#   ./run_local.sh            the project alone (pip install -e .), then build a dataset from an embedded corpus
#   ./run_local.sh test       the `dev` extra (TensorFlow, JAX, torch, transformers, dask, pytest), then the tests
#   ./run_local.sh bench ...  the `dev` extra, then a benchmark script from bench/
#   ./run_local.sh train|evaluate|export ...   the `train` extra (TensorFlow, JAX, Flax), then that subcommand
#   ./run_local.sh SUBCOMMAND ...   the project alone, then any other `bertbeam` subcommand (build, inspect, vocab,
#                                   plan, ...)
# .venv/.bertbeam-installed records the extras installed; a command that needs one more installs it then
# (and everything is reinstalled when setup.py changes).
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3}
STAMP="$VENV/.bertbeam-installed"

# The extra a command needs ("" = the project alone).
extra_for() {
  case "${1:-}" in
    test|bench) echo dev ;;
    train|evaluate|export) echo train ;;
    *) echo "" ;;
  esac
}

# The extras recorded in the stamp, comma-separated. A stamp from before extras were recorded (an empty file)
# was written after installing `dev`.
installed_extras() {
  if [ ! -f "$STAMP" ]; then
    echo "-"  # nothing installed
  elif [ -s "$STAMP" ]; then
    sed -n 's/^extras=//p' "$STAMP" | head -n 1
  else
    echo dev
  fi
}

# Whether the comma-separated extras $1 include what extra $2 needs (`dev` holds everything `train` does).
covers() {
  local have=",$1," want=$2
  [ -z "$want" ] && return 0
  case "$have" in *",$want,"*|*",dev,"*) return 0 ;; esac
  return 1
}

describe() {
  case "$1" in
    "") echo "bertbeam and its pipeline dependencies (Apache Beam, tokenizers, sentencepiece; ~530 MB)" ;;
    train) echo "bertbeam with the train extra (TensorFlow, JAX, Flax, Optax, Orbax)" ;;
    dev) echo "bertbeam with the dev extra (train + torch, transformers, tensorflow-text, dask, pytest; ~4.4 GB, several minutes)" ;;
    *) echo "bertbeam with the $1 extra" ;;
  esac
}

setup() {
  local want=$1 have
  have=$(installed_extras)
  if [ "$have" != "-" ] && [ ! setup.py -nt "$STAMP" ] && covers "$have" "$want"; then
    return 0
  fi
  # Keep what is installed (a reinstall after setup.py changed upgrades it too) and add what this command needs.
  local extras=""
  [ "$have" != "-" ] && extras=$have
  if ! covers "$extras" "$want"; then
    extras=${extras:+$extras,}$want
  fi
  local target="."
  [ -n "$extras" ] && target=".[$extras]"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[run_local] creating virtualenv $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  echo "[run_local] installing $(describe "$want") into $VENV: pip install -e '$target'" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e "$target" >&2
  echo "extras=$extras" > "$STAMP"
}

export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
cmd=${1:-demo}
case "$cmd" in
  test)
    shift; setup dev
    exec "$VENV/bin/python" -m pytest -q "$@" tests
    ;;
  bench)
    shift; setup dev
    exec "$VENV/bin/python" "$@"
    ;;
  demo)
    [ $# -gt 0 ] && shift
    setup ""
    exec "$VENV/bin/python" -m pipeline.demo "$@"
    ;;
  bertbeam)
    shift; setup "$(extra_for "${1:-}")"
    exec "$VENV/bin/bertbeam" "$@"
    ;;
  *)
    setup "$(extra_for "$cmd")"
    exec "$VENV/bin/bertbeam" "$@"
    ;;
esac
