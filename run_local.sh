#!/usr/bin/env bash
# bertbeam local entry point.
#   ./run_local.sh            set up .venv if needed, then build a dataset from an embedded default corpus
#   ./run_local.sh test       set up .venv if needed, then run the test suite
#   ./run_local.sh bench ...  set up .venv if needed, then run a benchmark script from bench/
#   ./run_local.sh SUBCOMMAND ...   any `bertbeam` subcommand (build, inspect, vocab, train, plan, ...)
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "[run_local] creating virtualenv $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  # Reinstall only when setup.py changed since the last install.
  local stamp="$VENV/.bertbeam-installed"
  if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
    echo "[run_local] installing bertbeam and its dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e ".[dev]" >&2
    touch "$stamp"
  fi
}

export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
cmd=${1:-demo}
case "$cmd" in
  test)
    shift; setup
    exec "$VENV/bin/python" -m pytest -q "$@" tests
    ;;
  bench)
    shift; setup
    exec "$VENV/bin/python" "$@"
    ;;
  demo)
    [ $# -gt 0 ] && shift
    setup
    exec "$VENV/bin/python" -m pipeline.demo "$@"
    ;;
  bertbeam)
    shift; setup
    exec "$VENV/bin/bertbeam" "$@"
    ;;
  *)
    setup
    exec "$VENV/bin/bertbeam" "$@"
    ;;
esac
