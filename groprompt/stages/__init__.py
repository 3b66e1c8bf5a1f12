"""Pipeline stages: each module holds one stage's function and its Ray adapters (``pipelines/`` only parses argv)."""
