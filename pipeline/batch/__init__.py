"""A batch's lifecycle on the queue: submit, follow, report, rerun, recover.
"""
