"""Score any checkpoint the way the InstructGPT paper did: preference win-rate, truthfulness, toxicity."""
