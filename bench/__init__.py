"""Benchmarks of the FHIR server, run against a real server process (`python -m bench.rest`)."""
