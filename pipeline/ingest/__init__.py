"""Reading customer files: sniffing, CSV and Excel readers, the canonical schema.
"""
