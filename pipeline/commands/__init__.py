"""One module per ``onboard`` command; commands never import each other.
"""
