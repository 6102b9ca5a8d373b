"""Everything kept in Redis: keys, records, scripts and the stores over them.
"""
