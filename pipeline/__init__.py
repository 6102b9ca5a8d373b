"""Batch onboarding pipeline: files, rows, rules, outcomes, reports and the CLI.

The pure modules here (outcomes, schema, masterdata, rules, validation) import no celery,
redis or httpx; only entry points do.
"""
