"""Tests of r1mega.rewards (rule-based rewards, worker pool, sandbox, CLI)."""
