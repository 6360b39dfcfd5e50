"""Entropy models (which return bits) and the one wrapper over a real entropy coder."""
