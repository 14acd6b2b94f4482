"""Verification: runners (run an artifact), metrics (compare with fp32) and latency."""
