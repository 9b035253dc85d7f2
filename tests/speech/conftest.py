"""Shared fixtures of the speech tests: a private data cache with small generated sets."""

import pytest

SMALL_COMMANDS = dict(n_train=96, n_test=48)
SMALL_DIGITS = dict(n_train=48, n_test=24)


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory):
    """A fresh XROBUST_CACHE for the whole session (generated sets land here)."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("xrobust-cache")
    mp.setenv("XROBUST_CACHE", str(root))
    mp.setenv("XROBUST_NO_FETCH", "1")
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def small_commands(speech_cache):
    from bench.registry import DATASETS

    load = DATASETS.get("synth-commands")
    return load("train", progress=False, **SMALL_COMMANDS), load("test", progress=False, **SMALL_COMMANDS)


@pytest.fixture(scope="session")
def small_digits(speech_cache):
    from bench.registry import DATASETS

    load = DATASETS.get("synth-digits")
    return load("train", progress=False, **SMALL_DIGITS), load("test", progress=False, **SMALL_DIGITS)
