"""Evaluation: pass@k, cons@k (majority vote by mathematical equivalence), greedy accuracy."""
