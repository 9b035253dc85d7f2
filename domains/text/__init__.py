"""The text domain: datasets, models, the word-substitution attack and tracks, registered into bench."""

from domains.text import datasets, models, wordsub, corruptions, tracks  # noqa: F401  (registration)
