"""The partner API: HTTP clients, the typed responses, the shared token.
"""
