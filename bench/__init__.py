"""Benchmarks of the mesh (issue 5): `python -m bench` (or `make bench`); see bench/README.md."""
