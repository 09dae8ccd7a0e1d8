"""Support scripts; scripts/harness is the Python test and benchmark harness."""
