"""Dify's console as its administrator uses it, for the tests that run against real Dify.

A standalone script (Python's standard library only), copied to a Dify host and run there
against the api's published port, as the console's browser would call it:

    python3 - API_URL COMMAND ARGUMENTS < tests/dify_console.py

ARGUMENTS: a JSON object, base64-encoded (so that it passes a remote shell unchanged).

Commands (each prints one JSON object):
    login   {email, password}             sign in (POST /console/api/login, the password
                                          base64-encoded as the console sends it), then read
                                          the signed-in account (GET /console/api/account/profile)
    seed    {email, password, name, text} sign in, create a workflow app called `name`, upload
                                          `text` as `<name>.txt`; returns their ids
    check   {email, password, name, file_id}
                                          sign in, find the app by name, read the uploaded file
                                          back through Dify (GET /console/api/files/<id>/preview)
    workflow {email, password, name, graph}
                                          sign in, create a workflow app called `name` (or take
                                          the existing one), save `graph` as its draft, publish
                                          it and create an app API key (the console's "API
                                          Access"); returns the app id and the key

Cookies are kept by hand: behind HTTPS Dify marks them Secure (and names them __Host-…),
which a cookie jar would not send back over the plain HTTP of the published port.
Authenticated requests carry X-CSRF-Token = the csrf_token cookie, as the console does.
"""
from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
import uuid


class Console:
    def __init__(self, base: str):
        self.base = base.rstrip("/") + "/console/api"
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body=None, files=None) -> tuple[int, object]:
        headers = {}
        data = None
        if files is not None:
            boundary = uuid.uuid4().hex
            name, content, mimetype = files
            data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                    f"Content-Type: {mimetype}\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            csrf = next((v for k, v in self.cookies.items() if k.endswith("csrf_token")), None)
            if csrf:
                headers["X-CSRF-Token"] = csrf
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as err:
            resp = err
        for value in resp.headers.get_all("Set-Cookie") or []:
            pair = value.split(";", 1)[0]
            if "=" in pair:
                key, val = pair.split("=", 1)
                self.cookies[key.strip()] = val.strip()
        raw = resp.read().decode(errors="replace")
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw[:500]
        return resp.status, payload

    def login(self, email: str, password: str) -> dict:
        status, body = self.request("POST", "/login", {
            "email": email, "password": base64.b64encode(password.encode()).decode(), "remember_me": False})
        result = {"login_status": status, "login_body": body}
        if status == 200:
            status, profile = self.request("GET", "/account/profile")
            result.update(profile_status=status,
                          profile_email=profile.get("email") if isinstance(profile, dict) else None)
        return result


def main(argv: list[str]) -> int:
    base, command, args = argv[1], argv[2], json.loads(base64.b64decode(argv[3]))
    console = Console(base)
    result = console.login(args["email"], args["password"])
    if command == "seed" and result["login_status"] == 200:
        status, app = console.request("POST", "/apps", {
            "name": args["name"], "mode": "workflow", "icon_type": "emoji", "icon": "\U0001F916",
            "icon_background": "#FFEAD5", "description": "made by the selfhost.dify tests"})
        result.update(app_status=status, app_id=app.get("id") if isinstance(app, dict) else app)
        status, upload = console.request("POST", "/files/upload",
                                         files=(args["name"] + ".txt", args["text"].encode(), "text/plain"))
        result.update(upload_status=status, file_id=upload.get("id") if isinstance(upload, dict) else upload)
    elif command == "check" and result["login_status"] == 200:
        status, apps = console.request("GET", "/apps?page=1&limit=100")
        names = [a.get("name") for a in apps.get("data", [])] if isinstance(apps, dict) else apps
        result.update(apps_status=status, app_names=names)
        status, preview = console.request("GET", f"/files/{args['file_id']}/preview")
        result.update(preview_status=status,
                      preview=preview.get("content") if isinstance(preview, dict) else preview)
    elif command == "workflow" and result["login_status"] == 200:
        result.update(publish_workflow(console, args["name"], args["graph"]))
    print(json.dumps(result))
    return 0


def publish_workflow(console: Console, name: str, graph: dict) -> dict:
    """What the console's workflow editor and its "Publish" and "API Access" buttons send."""
    status, apps = console.request("GET", "/apps?page=1&limit=100&mode=workflow")
    found = [a for a in apps.get("data", []) if a.get("name") == name] if isinstance(apps, dict) else []
    if found:
        app_id = found[0]["id"]
    else:
        status, app = console.request("POST", "/apps", {
            "name": name, "mode": "workflow", "icon_type": "emoji", "icon": "\u2699",
            "icon_background": "#E0F2FE", "description": "made by the selfhost.dify tests"})
        if status != 201:
            return {"app_status": status, "app_body": app}
        app_id = app["id"]
    status, draft = console.request("GET", f"/apps/{app_id}/workflows/draft")
    body = {"graph": graph, "features": {}, "environment_variables": [], "conversation_variables": []}
    if status == 200 and isinstance(draft, dict) and draft.get("hash"):
        body["hash"] = draft["hash"]
    status, saved = console.request("POST", f"/apps/{app_id}/workflows/draft", body)
    if status != 200:
        return {"app_id": app_id, "draft_status": status, "draft_body": saved}
    status, published = console.request("POST", f"/apps/{app_id}/workflows/publish", {})
    if status not in (200, 201):
        return {"app_id": app_id, "publish_status": status, "publish_body": published}
    status, key = console.request("POST", f"/apps/{app_id}/api-keys")
    return {"app_id": app_id, "key_status": status, "key": key.get("token") if isinstance(key, dict) else key}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
