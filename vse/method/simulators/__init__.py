"""Simulators: predict a neuron's values from an explanation, behind one interface."""
