"""Writers: the SFT / RM / PPO dataset folders, their cards, the build report, and the push to the Hub."""
