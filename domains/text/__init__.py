"""The text domain: datasets, models, the discrete attacks (word-sub, pwws, deepwordbug) and tracks,
registered into bench."""

from domains.text import (datasets, defenses, models, wordnet, wordsub, pwws, deepwordbug, corruptions,  # noqa: F401
                          tracks, samples)

