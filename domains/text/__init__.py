"""The text domain: datasets, models, the word-substitution attack and tracks, registered into bench."""

from domains.text import datasets, defenses, models, wordnet, wordsub, corruptions, tracks  # noqa: F401  (registration)
