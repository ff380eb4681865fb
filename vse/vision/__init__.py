"""The vision side: models, probe images, activations, weights, captions, CLIP-Dissect, fixtures."""
