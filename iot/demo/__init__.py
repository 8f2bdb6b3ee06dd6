"""The demo fleet: realistic generation profiles driven by measured weather (see profiles.py)."""
