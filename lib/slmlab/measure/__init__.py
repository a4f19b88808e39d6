"""Measure models and servers: speed and memory (bench), engines side by side (compare), quality (evaluate), load."""
