"""Leaderboard: a pure function from results/ to tables, plots and a static site."""
