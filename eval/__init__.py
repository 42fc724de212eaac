"""Evaluation: test-set readers, negative audio, Numba metric kernels, zarr map store and reports."""
