"""The image domain: datasets, models and tracks, registered into bench's registries."""

from domains.image import cifar10c, corruptions, datasets, defenses, models, pretrained, tracks  # noqa: F401  (registration)
