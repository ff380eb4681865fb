"""vse: explain single neurons of vision models with an LLM, and score the explanations."""

__version__ = "0.1.0"
