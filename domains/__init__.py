"""Domain adapters (image, speech, text); each registers itself into bench's registries."""
