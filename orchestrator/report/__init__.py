"""Results for people: the leaderboard, per-attempt timelines and plots, as a static site."""
