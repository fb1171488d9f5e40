"""Environment images: what they are (images.toml), how they are built, which digests are locked."""
