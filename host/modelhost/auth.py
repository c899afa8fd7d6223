"""The server's bearer token, checked the same way by every front end."""

import hmac

from .errors import Unauthorized


def check_bearer(authorization: str, auth_token: str) -> None:
    """Unauthorized unless ``authorization`` (the header's, or gRPC metadata's, value) is ``Bearer TOKEN``."""
    scheme, _, token = authorization.partition(" ")
    # compare_digest takes as long whatever the token's first wrong byte: no timing oracle.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), auth_token.encode()):
        raise Unauthorized("a valid 'Authorization: Bearer' token is required")
