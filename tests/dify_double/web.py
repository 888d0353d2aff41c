# Copyright: selfhost.dify contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TEST DOUBLE, NOT DIFY: the contract double's web (mode ``web``, port 3000).

It plays the deployment contract of Dify's web image (``langgenius/dify-web``) and follows
upstream's web/docker/entrypoint.sh: the page's links use NEXT_PUBLIC_API_PREFIX and
NEXT_PUBLIC_PUBLIC_API_PREFIX, derived from CONSOLE_API_URL and APP_API_URL as that script
derives them. It renders no console: a page that says it is a double.
"""

from __future__ import annotations

import html
import json

from .server import NOTE, App, Response


def web_prefixes(environ):
    """What Dify's web image derives from CONSOLE_API_URL and APP_API_URL."""
    console = (environ.get("CONSOLE_API_URL") or "").rstrip("/")
    app = (environ.get("APP_API_URL") or "").rstrip("/")
    return {"NEXT_PUBLIC_API_PREFIX": console + "/console/api", "NEXT_PUBLIC_PUBLIC_API_PREFIX": app + "/api"}


WEB_SHOWN = ("CONSOLE_API_URL", "APP_API_URL", "NEXT_PUBLIC_COOKIE_DOMAIN", "NEXT_PUBLIC_SOCKET_URL", "MARKETPLACE_API_URL")


class WebApp(App):
    def handle(self, request):
        if request.method not in ("GET", "HEAD"):
            return self.not_found(request)
        prefixes = web_prefixes(self.env)
        info = {"double": True, "note": NOTE, "plays": self.version, "mode": self.mode, "derived": prefixes,
                "env": {name: self.env.get(name, "") for name in WEB_SHOWN},
                "request": request.echo(self.mode)}
        esc = html.escape
        api_prefix, public_prefix = prefixes["NEXT_PUBLIC_API_PREFIX"], prefixes["NEXT_PUBLIC_PUBLIC_API_PREFIX"]
        page = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Dify contract double (web)</title>
<meta name="dify-double" content="web">
<meta name="next-public-api-prefix" content="{api}">
<meta name="next-public-public-api-prefix" content="{public}">
</head>
<body data-api-prefix="{api}" data-public-api-prefix="{public}">
<h1>Dify contract double (web)</h1>
<p>This page is served by a test double that plays Dify {version}'s web image for the
selfhost.dify tests. It is not Dify.</p>
<p>Dify's api, worker, beat and migrations run Dify's real image, built from upstream source.
The double plays only the plugin daemon (which cannot be built here) and, until their own
images are built from upstream, the web and the sandbox.</p>
<dl>
<dt>NEXT_PUBLIC_API_PREFIX</dt><dd id="api-prefix">{api}</dd>
<dt>NEXT_PUBLIC_PUBLIC_API_PREFIX</dt><dd id="public-api-prefix">{public}</dd>
<dt>path</dt><dd id="path">{path}</dd>
</dl>
<ul>
<li><a id="setup-link" href="{api}/setup">console setup API</a></li>
<li><a id="init-link" href="{api}/init">console init API</a></li>
<li><a id="public-api-link" href="{public}/site">public app API</a></li>
<li><a href="/install">install</a> <a href="/signin">sign in</a> <a href="/explore/apps">explore</a></li>
</ul>
<script type="application/json" id="dify-double">{info}</script>
</body>
</html>
""".format(api=esc(api_prefix), public=esc(public_prefix), version=esc(self.version), path=esc(request.path),
           info=json.dumps(info).replace("</", "<\\/"))
        return Response(200, page, content_type="text/html; charset=utf-8")
