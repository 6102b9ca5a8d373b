"""Writing reports: CSV and a streamed xlsx, formula-safe and atomic.
"""
