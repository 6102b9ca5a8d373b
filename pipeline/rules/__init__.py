"""The local validation rules, vectorised over a chunk of rows.
"""
