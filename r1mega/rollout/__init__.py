"""Rollout engines: generate responses (tokens + log-probs) from the current policy."""
