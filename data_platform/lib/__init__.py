"""Reusable components of the platform."""
