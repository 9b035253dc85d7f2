"""The text domain: datasets, models, the word-substitution attack and tracks, registered into bench."""

from domains.text import datasets, models, wordsub, tracks  # noqa: F401  (registration)
