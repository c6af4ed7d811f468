"""The regulators' dashboard page: GET /dashboard and its scripts and style sheet, shipped in the package.

The page is public and holds no data: the browser signs in with a bearer token (kept in
sessionStorage) and reads `crossCityDashboard` from /graphql, which decides what the token may see.
Nothing is fetched from elsewhere. The Content-Security-Policy allows only this origin's script, style
and /graphql, no inline script or style, no framing, and no form submission (the sign-in form is handled
by the script, so a token can never end up in a URL).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STATIC_DIR = Path(__file__).resolve().parent / "static"
_ASSETS = {  # URL path → (file, media type); a fixed map, so no request names a file
    "/dashboard": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard/format.js": ("format.js", "text/javascript; charset=utf-8"),
    "/dashboard/charts.js": ("charts.js", "text/javascript; charset=utf-8"),
    "/dashboard/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
PATHS = frozenset(_ASSETS)

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "img-src 'self' data:",
    "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def routes() -> list[Route]:
    """The page's routes (GET and HEAD). Files are read once, here; a changed file needs a restart."""
    served = []
    for path, (name, media_type) in _ASSETS.items():
        body = (STATIC_DIR / name).read_bytes()
        headers = SECURITY_HEADERS | {"ETag": f'"{hashlib.sha256(body).hexdigest()[:32]}"',
                                      "Cache-Control": "no-cache"}  # revalidate: a new release shows at once
        served.append(Route(path, _asset(body, media_type, headers), methods=["GET"]))
    return served


def _asset(body: bytes, media_type: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    async def serve(request: Request) -> Response:
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    return serve
