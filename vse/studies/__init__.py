"""Studies: the recorded experiments as data, each kind run through one interface."""
