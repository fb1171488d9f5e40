"""Persistence: attempts, what happened in them, and their results."""

from orchestrator.store.base import Store
from orchestrator.store.sql import SqlStore

__all__ = ["SqlStore", "Store"]
