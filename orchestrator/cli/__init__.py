"""The speedrun command line."""
