"""collat_client: the typed SDK and CLI that hospital tools use to reach the serving stack.

Deliberately light (numpy and friends, never torch, never the server-side packages), so
that a PACS integration can import it without a deep-learning stack.
"""

__version__ = "0.1.0"
