"""The pure core: outcomes, settings, errors, master data, merging, logs, atomic writes.

Imports nothing else of the project and none of celery, redis, httpx or aiohttp.
"""
