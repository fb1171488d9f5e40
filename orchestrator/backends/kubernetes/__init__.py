"""The kubernetes backend (orchestrator/backends/kubernetes/backend.py)."""

from orchestrator.backends.kubernetes.backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
