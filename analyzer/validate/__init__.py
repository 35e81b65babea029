"""Validation of the models against real public measurements."""
