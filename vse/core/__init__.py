"""The core: numpy and scipy, no I/O, no LLM (scaling, subset strategies, protocols, Algorithm 1, seeds, vocabulary)."""
