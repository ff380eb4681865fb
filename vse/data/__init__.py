"""Data: a neuron id and a feature kind in, a Target out (fixtures or a live model)."""
