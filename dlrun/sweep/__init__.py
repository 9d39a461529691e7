"""Sweeps (`dlrun -m`): each job's record, resume and failure handling, and the results table of a sweep dir.

Imports no torch: the summary of a sweep is read in a fraction of a second.
"""
