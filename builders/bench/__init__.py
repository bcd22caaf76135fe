"""Benchmarks of the prompt pipeline: a synthetic prompt log with known duplicates and personal data
(`generate`), and per-stage speed, memory and quality against the anchors (`run`)."""
