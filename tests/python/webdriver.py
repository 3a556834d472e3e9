"""A small W3C WebDriver client over HTTP (standard library only) for headless Chromium
through chromedriver, the Debian packages `chromium` and `chromium-driver`. No Selenium:
nothing is downloaded, chromedriver is started here on a free loopback port.

As a command, it keeps the management UI's overview page open (polling live) for a while,
so a benchmark can be run with and without the UI open:

    python3 tests/python/webdriver.py hold-overview --url http://127.0.0.1:15672/ \
        --user guest --password guest --seconds 60
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
START_TIMEOUT = 20.0


def find_chromium():
    """(browser, chromedriver) paths, or None when either is missing."""
    browser = next((path for path in CHROMIUM_CANDIDATES if os.access(path, os.X_OK)), None)
    driver = shutil.which("chromedriver") or next(
        (path for path in DRIVER_CANDIDATES if os.access(path, os.X_OK)), None)
    if browser and driver:
        return browser, driver
    return None


class WebDriverError(Exception):
    pass


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """One headless Chromium session. Use as a context manager, or call quit()."""

    def __init__(self, width=1440, height=1000):
        found = find_chromium()
        if found is None:
            raise WebDriverError("chromium and chromedriver are not installed "
                                 "(Debian packages chromium, chromium-driver)")
        browser, driver = found
        self.port = _free_port()
        self.driver = subprocess.Popen(
            [driver, "--port=%d" % self.port, "--allowed-ips=127.0.0.1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.session = None
        try:
            self._wait_ready()
            capabilities = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": browser,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=%d,%d" % (width, height)],
                },
            }}}
            self.session = self._call("POST", "/session", capabilities, session=False)["sessionId"]
        except Exception:
            self.quit()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.quit()

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self._call("GET", "/status", session=False).get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            if self.driver.poll() is not None:
                raise WebDriverError("chromedriver exited with code %s" % self.driver.returncode)
            if time.monotonic() > deadline:
                raise WebDriverError("chromedriver did not get ready in %.0f s" % START_TIMEOUT)
            time.sleep(0.1)

    def _call(self, method, path, body=None, session=True):
        url = "http://127.0.0.1:%d%s%s" % (
            self.port, "/session/%s" % self.session if session else "", path)
        data = None if body is None else json.dumps(body).encode()
        if data is None and method == "POST":
            data = b"{}"
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                value = json.loads(error.read()).get("value", {})
            except ValueError:
                value = {}
            raise WebDriverError("%s %s: %s: %s" % (method, path, value.get("error"),
                                                     value.get("message", "")[:500]))
        return answer.get("value") if isinstance(answer, dict) and "value" in answer else answer

    # Navigation and scripts

    def get(self, url):
        self._call("POST", "/url", {"url": url})

    @property
    def url(self):
        return self._call("GET", "/url")

    def execute(self, script, *args):
        """Runs `script` (a function body: `return ...`) in the page."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path):
        png = base64.b64decode(self._call("GET", "/screenshot"))
        with open(path, "wb") as out:
            out.write(png)
        return path

    # Elements

    def find(self, selector, xpath=False):
        found = self._call("POST", "/element", {
            "using": "xpath" if xpath else "css selector", "value": selector})
        return found[ELEMENT]

    def find_all(self, selector, xpath=False):
        found = self._call("POST", "/elements", {
            "using": "xpath" if xpath else "css selector", "value": selector})
        return [item[ELEMENT] for item in found]

    def click(self, element):
        self._call("POST", "/element/%s/click" % element)

    def clear(self, element):
        self._call("POST", "/element/%s/clear" % element)

    def type(self, element, text):
        self._call("POST", "/element/%s/value" % element, {"text": text})

    def fill(self, selector, text):
        element = self.wait_for_element(selector)
        self.clear(element)
        self.type(element, text)
        return element

    def text(self, element):
        return self._call("GET", "/element/%s/text" % element)

    def attribute(self, element, name):
        return self._call("GET", "/element/%s/attribute/%s" % (element, name))

    # Waiting (never a fixed sleep in a test: a condition with a timeout)

    def wait(self, condition, timeout=20.0, what="condition", every=0.1):
        """Calls condition() until it returns something true; returns that."""
        deadline = time.monotonic() + timeout
        last_error = None
        while True:
            try:
                result = condition()
                if result:
                    return result
            except WebDriverError as error:
                last_error = error
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.0f s waiting for %s%s" % (
                    timeout, what, " (last error: %s)" % last_error if last_error else ""))
            time.sleep(every)

    def wait_for_element(self, selector, timeout=20.0, xpath=False):
        return self.wait(lambda: self.find(selector, xpath), timeout, "element %s" % selector)

    def wait_for_text(self, selector, expected, timeout=20.0):
        """Waits until the element's visible text contains `expected`."""
        return self.wait(lambda: expected in self.text(self.find(selector)), timeout,
                         "%r in %s" % (expected, selector))

    def click_button(self, label, within=""):
        """Clicks the button whose text is `label` (inside the XPath `within`, if given)."""
        element = self.wait_for_element(
            "%s//button[normalize-space()='%s']" % (within, label), xpath=True)
        self.click(element)

    def quit(self):
        if self.session:
            try:
                self._call("DELETE", "")
            except (OSError, WebDriverError):
                pass
            self.session = None
        if self.driver.poll() is None:
            self.driver.terminate()
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
                self.driver.wait(5)


def log_in(browser, url, user, password):
    """Opens the UI at `url` and logs in; returns once the tabs are shown."""
    browser.get(url)
    browser.fill("#login-form input[name=username]", user)
    browser.fill("#login-form input[name=password]", password)
    browser.click(browser.find("#login-button"))
    browser.wait_for_element("nav.tabs")


def hold_overview(url, user, password, seconds):
    """Keeps the overview open for `seconds`; returns the samples its charts took."""
    with Browser() as browser:
        log_in(browser, url.rstrip("/") + "/#/overview", user, password)
        browser.get(url.rstrip("/") + "/#/overview")
        browser.wait_for_element("#rates-chart svg")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        samples = browser.execute(
            "return Number(document.querySelector('#queued-chart svg').dataset.samples || 0)")
        status = browser.text(browser.find("#overview-status"))
        return samples, status


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    hold = commands.add_parser("hold-overview", help="keep the overview page open, polling live")
    hold.add_argument("--url", default="http://127.0.0.1:15672/")
    hold.add_argument("--user", default="guest")
    hold.add_argument("--password", default="guest")
    hold.add_argument("--seconds", type=float, default=60.0)
    options = parser.parse_args(argv)
    # Stopped by a script (SIGTERM): leave through the `with`, which ends chromedriver and
    # Chromium (they run in a session of their own, so no signal reaches them otherwise).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    samples, status = hold_overview(options.url, options.user, options.password, options.seconds)
    print("overview open for %.0f s: %d samples in the charts (%s)" % (options.seconds, samples, status))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
