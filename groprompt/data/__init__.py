"""Datasets: benchmark readers, the RefShapes generator, and WebDataset shards."""
