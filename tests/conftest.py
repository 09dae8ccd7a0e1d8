"""Shared test setup: tests run with IPS_DEBUG semantics off unless a test says otherwise."""
