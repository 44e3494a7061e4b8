"""glibc malloc tuning of a build process: applied where glibc is the C library, a silent no-op elsewhere."""
import subprocess
import sys

from pipeline import runtime_env


def test_mallopt_succeeds_on_glibc_and_sets_the_child_variables():
    if runtime_env._glibc() is None:  # pylint: disable=protected-access
        import pytest
        pytest.skip("not a glibc system")
    env = {"MALLOC_TRIM_THRESHOLD_": "1234"}
    assert runtime_env.tune_malloc(env=env) is True
    assert env["MALLOC_TRIM_THRESHOLD_"] == "1234"  # a user's own setting is kept
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(runtime_env.MALLOC_THRESHOLD_BYTES)
    assert env["MALLOC_ARENA_MAX"] == "1"  # one arena: a build works on one thread at a time
    calls = []

    class Recording:
        @staticmethod
        def mallopt(param, value):
            calls.append(param)
            return 1
    import unittest.mock
    with unittest.mock.patch.object(runtime_env, "_glibc", lambda: Recording()):
        assert runtime_env.tune_malloc(env={"MALLOC_ARENA_MAX": "4"}) is True
    assert runtime_env.M_ARENA_MAX not in calls  # a user's MALLOC_ARENA_MAX stands in this process too


def test_a_refusing_mallopt_reports_false_without_raising(monkeypatch):
    class Refuses:  # a C library whose mallopt answers 0 (refused), as glibc does for values it rejects
        @staticmethod
        def mallopt(param, value):
            return 0
    monkeypatch.setattr(runtime_env, "_glibc", lambda: Refuses())
    assert runtime_env.tune_malloc(env={}) is False


def test_without_glibc_it_is_a_no_op(monkeypatch):
    monkeypatch.setattr(runtime_env, "_glibc", lambda: None)
    env = {}
    assert runtime_env.tune_malloc(env=env) is False
    assert env == {}


def test_glibc_detection_in_a_fresh_process_matches_the_platform():
    out = subprocess.run([sys.executable, "-c", "import platform; print(platform.libc_ver()[0])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert (runtime_env._glibc() is not None) == (out == "glibc")  # pylint: disable=protected-access
