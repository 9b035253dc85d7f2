"""The text domain: datasets, models, the discrete attacks (word-sub, pwws, deepwordbug, textfooler),
evidence samples and tracks, registered into bench."""

from domains.text import (datasets, defenses, models, wordnet, wordsub, pwws, deepwordbug,  # noqa: F401
                          textfooler, corruptions, tracks, samples)
