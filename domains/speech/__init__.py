"""The speech domain: keyword spotting and connected-digit recognition on raw waveforms."""

from domains.speech import adversarial, corruptions, datasets, models, pretrained, tracks  # noqa: F401  (registration)
