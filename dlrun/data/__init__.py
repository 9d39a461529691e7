"""Datasets: each builder returns a DataModule holding the train, val and test splits as tensors."""
