"""The sandbox: workspace rules, the restricted tool API (server and client), experiments."""
