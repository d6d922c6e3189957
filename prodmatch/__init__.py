"""prodmatch: find the same product across catalogues by image and text, with PostgreSQL + pgvector."""

__version__ = "0.1.0"
