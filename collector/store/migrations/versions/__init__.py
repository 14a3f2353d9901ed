"""Migration scripts, one per schema version: v0001_initial.py, v0002_..., ...

Files start with a letter so that they are valid module names for mypy.
"""
