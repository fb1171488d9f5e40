"""LLM clients for agents: the official openai and anthropic SDKs behind one small interface."""
