"""The docker backend: hardened sandbox and scorer containers on one Docker engine."""

from orchestrator.backends.docker.backend import DockerBackend

__all__ = ["DockerBackend"]
