# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST DOUBLE, NOT DIFY: the contract double's sandbox (mode ``sandbox``, port 8194).

It plays the HTTP contract of Dify's code sandbox (``langgenius/dify-sandbox``) and follows
upstream's internal/controller/router.go and internal/middleware/auth.go: ``GET /health``,
and the ``/v1/sandbox/*`` routes behind the ``X-Api-Key`` header (API_KEY). It runs no code:
``/v1/sandbox/run`` answers that the double does not execute code.
"""

from __future__ import annotations

from .server import App, json_response


class SandboxApp(App):
    def handle(self, request):
        path = request.path.rstrip("/") or "/"
        if path == "/health" and request.method in ("GET", "HEAD"):
            return json_response("ok")
        if path.startswith("/v1/sandbox/"):
            key = self.env.get("API_KEY") or "dify-sandbox"
            if request.headers.get("X-Api-Key") != key:
                return json_response({"code": -401, "message": "Unauthorized", "data": None}, 401)
            if path == "/v1/sandbox/run" and request.method == "POST":
                return json_response({"code": 0, "message": "success", "double": True, "data": {
                    "error": "the Dify contract double's sandbox does not execute code", "stdout": ""}})
            if path == "/v1/sandbox/dependencies" and request.method == "GET":
                return json_response({"code": 0, "message": "success", "double": True, "data": {"dependencies": []}})
        return self.not_found(request)
