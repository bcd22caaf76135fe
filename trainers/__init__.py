"""Thin entry points for the paper's three stages: SFT and RM on TRL, PPO (with PPO-ptx) in one compact file."""
