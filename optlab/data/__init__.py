"""Datasets: the IDX file format and the registry of datasets that use it."""
