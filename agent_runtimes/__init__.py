"""Agents that act on a task only through the restricted tool API."""
