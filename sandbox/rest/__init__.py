"""The REST API (`/api/v10`), as Discord answers a bot: a router (router.py) over one module
per resource."""

from sandbox.rest.router import Rest

__all__ = ["Rest"]
