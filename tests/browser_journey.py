"""A user's first minutes with Dify, in a real browser: Debian's Chromium driven by Playwright,
through the lab's edge over HTTPS with the edge's CA trusted (scripts/selfhost_lab/browser.py:
the set-up `scripts/lab.py browser` gives a user), against Dify's real web and api.

The journey: `https://<domain>/` ends on the sign-in page ("Log in to Dify"), every asset the
page loads answers (no 404 under /_next/static), the console shows no mixed-content, CORS or CSP
error; the administrator signs in through the form and lands on the apps page, where the account
menu shows their name; a reload keeps the session; "Log out" returns to the sign-in page. A
screenshot of each page is kept in tests/output/browser/.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.helpers import ROOT

from selfhost_lab.browser import CHROMIUM, BrowserSetup

SCREENSHOTS = ROOT / "tests" / "output" / "browser"
# What a browser console says when a page is broken by its origin settings.
CONSOLE_ERRORS = re.compile(r"mixed content|cors|access-control-allow-origin|content security policy|"
                            r"refused to (load|connect|execute|apply)", re.IGNORECASE)
TIMEOUT_MS = 60_000


@dataclass
class Seen:
    """What the browser saw: every response, failed request and console message."""

    responses: list[tuple[int, str, str]] = field(default_factory=list)  # (status, method, url)
    failed: list[tuple[str, str]] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.responses)

    def bad_since(self, mark: int) -> list[tuple[int, str, str]]:
        return [r for r in self.responses[mark:] if r[0] >= 400]

    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if CONSOLE_ERRORS.search(text)]


def walk(found: BrowserSetup, email: str, password: str, name: str, label: str) -> Seen:
    """Run the journey; assert each step. Screenshots: tests/output/browser/<label>-<page>.png."""
    from playwright.sync_api import expect, sync_playwright  # pylint: disable=import-outside-toplevel

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    seen = Seen()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=found.args, env=found.env)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US").new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("response", lambda r: seen.responses.append((r.status, r.request.method, r.url)))
            page.on("requestfailed", lambda r: seen.failed.append((r.url, r.failure or "")))
            page.on("console", lambda m: seen.console.append((m.type, m.text)))
            page.on("pageerror", lambda e: seen.console.append(("pageerror", str(e))))

            # 1. The site's root ends on the sign-in page. While nobody is signed in, the console
            #    API answers the page's session checks (account/profile, refresh-token) with 401:
            #    that is what sends a visitor to sign in. Every other request answers below 400.
            page.goto(found.url, wait_until="commit")
            page.wait_for_url(re.compile(r"/signin"))
            expect(page.get_by_role("heading", name="Log in to Dify")).to_be_visible()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=SCREENSHOTS / f"{label}-signin.png", full_page=True)
            anonymous = [r for r in seen.responses if r[0] >= 400
                         and not (r[0] == 401 and "/console/api/" in r[2])]
            assert not anonymous, f"requests of the anonymous visit failed: {anonymous}"
            static = [r for r in seen.responses if "/_next/static/" in r[2]]
            assert static and all(r[0] < 400 for r in static), f"/_next/static answers: {static}"
            insecure = [r for r in seen.responses if r[2].startswith("http://")]
            assert not insecure, f"the page loaded insecure URLs: {insecure}"

            # 2. The administrator signs in through the form and lands on the apps page.
            mark = seen.mark()
            page.locator("#email").fill(email)
            page.locator("#password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"/apps"))
            page.wait_for_load_state("networkidle")
            assert_name_shown(page, name, expect)
            page.screenshot(path=SCREENSHOTS / f"{label}-apps.png", full_page=True)
            assert not seen.bad_since(mark), f"requests after signing in failed: {seen.bad_since(mark)}"

            # 3. A reload keeps the session.
            mark = seen.mark()
            page.reload(wait_until="commit")
            page.wait_for_load_state("networkidle")
            assert "/signin" not in page.url, f"the reload lost the session: {page.url}"
            assert re.search(r"/apps", page.url), page.url
            assert_name_shown(page, name, expect)
            assert not seen.bad_since(mark), f"requests after the reload failed: {seen.bad_since(mark)}"

            # 4. "Log out" returns to the sign-in page, and the session is gone.
            page.get_by_text("Log out", exact=True).click()
            page.wait_for_url(re.compile(r"/signin"))
            expect(page.get_by_role("heading", name="Log in to Dify")).to_be_visible()
            page.screenshot(path=SCREENSHOTS / f"{label}-signed-out.png", full_page=True)
            page.goto(f"https://{found.domain}/apps", wait_until="commit")
            page.wait_for_url(re.compile(r"/signin"))
        finally:
            browser.close()
    # Requests to the site that got no answer at all (a connection reset, a TLS error). Not
    # counted: those the page itself cancelled (a navigation aborts the prefetches before it),
    # Chromium retrying after a network change on this machine (Docker adds interfaces), and
    # calls to other sites (the console asks api.github.com for Dify's star count).
    lost = [(url, why) for url, why in seen.failed if url.startswith(f"https://{found.domain}/")
            and not any(benign in why for benign in ("ERR_ABORTED", "ERR_NETWORK_CHANGED"))]
    assert not lost, f"requests to the site that got no answer: {lost}"
    assert not seen.console_errors(), f"console errors: {seen.console_errors()}"
    return seen


def assert_name_shown(page, name: str, expect) -> None:
    """The account menu (the avatar at the top right, showing the name's initial) names the
    signed-in administrator; it stays open, so that "Log out" can be clicked next."""
    avatar = page.locator('button[aria-haspopup="menu"]').filter(
        has_text=re.compile(rf"^\s*{re.escape(name[:1].upper())}\s*$"))
    avatar.click()
    expect(page.get_by_role("menu").get_by_text(name, exact=True)).to_be_visible()
