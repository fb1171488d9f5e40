"""How a command runs: process groups with limits, output capture and progress parsing."""
