"""The drop folder: its layout on disk and the watcher that runs what is dropped.
"""
