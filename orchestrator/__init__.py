"""speedrun-orchestrator: runs the Automated LLM Speedrunning Benchmark honestly and at scale."""

__version__ = "0.1.0"
