"""The speech domain: keyword spotting and connected-digit recognition on raw waveforms."""

from domains.speech import (adversarial, corruptions, datasets, defenses, models, pretrained,  # noqa: F401  (registration)
                            samples, targets, tracks)
