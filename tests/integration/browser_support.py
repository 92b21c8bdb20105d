"""Headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol, for page tests.

    with Browser() as browser:
        page = browser.open('file:///.../report.html')   # waits for the load event
        page.evaluate('document.title')                  # the rendered DOM, through JavaScript
        page.screenshot('/path/shot.png')                # full page PNG (full=False: the first screen)
        page.errors                                      # uncaught exceptions, console errors, failed loads

Chromium listens on 127.0.0.1 only, on a port it picks itself (--remote-debugging-port=0, read
back from DevToolsActivePort in a fresh --user-data-dir); the client is websocket-client
(requirements.txt). Chromium is stopped by its own pid at the end.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import websocket

CHROMIUM = os.environ.get('CHROMIUM', 'chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--disable-extensions', '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0']


class BrowserError(Exception):
    pass


def chromium_path():
    return shutil.which(CHROMIUM)


class Page(object):
    def __init__(self, ws_url, timeout):
        # No Origin header: Chromium refuses DevTools websockets from origins it was not told to allow.
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.timeout = timeout
        self.next_id = 0
        self.events = []
        self.errors = []

    def _event(self, msg):
        method, params = msg.get('method'), msg.get('params', {})
        self.events.append(method)
        if method == 'Runtime.exceptionThrown':
            details = params.get('exceptionDetails', {})
            self.errors.append('exception: %s' % (details.get('exception', {}).get('description') or details.get('text')))
        elif method == 'Runtime.consoleAPICalled' and params.get('type') in ('error', 'assert'):
            self.errors.append('console.%s: %s' % (params['type'], ' '.join(
                str(a.get('value', a.get('description', ''))) for a in params.get('args', []))))
        elif method == 'Log.entryAdded' and params.get('entry', {}).get('level') == 'error':
            entry = params['entry']
            self.errors.append('log (%s): %s %s' % (entry.get('source'), entry.get('text'), entry.get('url', '')))
        elif method == 'Network.loadingFailed':
            self.errors.append('load failed: %s' % params.get('errorText'))
        elif method == 'Network.requestWillBeSent':
            url = params.get('request', {}).get('url', '')
            if not url.startswith(('file:', 'data:', 'about:')):
                self.errors.append('network request to %s (the page must be self-contained)' % url)

    def send(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps(dict(id=mine, method=method, params=params)))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == mine:
                if 'error' in msg:
                    raise BrowserError('%s: %s' % (method, msg['error']))
                return msg.get('result', {})
            if 'method' in msg:
                self._event(msg)
        raise BrowserError('%s: no answer in %s s' % (method, self.timeout))

    def wait_event(self, name):
        deadline = time.monotonic() + self.timeout
        while name not in self.events:
            if time.monotonic() > deadline:
                raise BrowserError('no %s event in %s s' % (name, self.timeout))
            self._event(json.loads(self.ws.recv()))

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        answer = self.send('Runtime.evaluate', expression=expression, returnByValue=True)
        if 'exceptionDetails' in answer:
            raise BrowserError('evaluate %r: %s' % (expression, answer['exceptionDetails']))
        return answer['result'].get('value')

    def screenshot(self, path, full=True, width=1280, height=1500):
        """A PNG of the whole page (``full``), or of its first ``width`` x ``height`` pixels."""
        if full:
            metrics = self.send('Page.getLayoutMetrics')
            size = metrics.get('cssContentSize') or metrics['contentSize']
            width, height = int(size['width']), min(int(size['height']), 12000)
        self.send('Emulation.setDeviceMetricsOverride', width=width, height=height, deviceScaleFactor=1, mobile=False)
        data = self.send('Page.captureScreenshot', format='png', captureBeyondViewport=full)['data']
        with open(path, 'wb') as handle:
            handle.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.ws.close()
        except Exception:  # pylint: disable=broad-except
            pass


class Browser(object):
    def __init__(self, timeout=60, width=1280, height=900):
        self.timeout = timeout
        self.size = (width, height)
        self.proc = None
        self.profile = None
        self.port = None

    def __enter__(self):
        binary = chromium_path()
        if not binary:
            raise BrowserError('chromium is not installed (make setup installs the Debian package)')
        self.profile = tempfile.mkdtemp(prefix='cohort-chromium-')
        self.proc = subprocess.Popen([binary] + FLAGS + ['--user-data-dir=' + self.profile,
                                                         '--window-size=%d,%d' % self.size, 'about:blank'],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        active = os.path.join(self.profile, 'DevToolsActivePort')
        deadline = time.monotonic() + self.timeout
        while not (os.path.exists(active) and open(active).read().count('\n') >= 1):
            if self.proc.poll() is not None:
                raise BrowserError('chromium exited with %s: %s' % (self.proc.returncode,
                                                                    self.proc.stderr.read().decode()[-2000:]))
            if time.monotonic() > deadline:
                raise BrowserError('chromium did not open its DevTools port in %s s' % self.timeout)
            time.sleep(0.1)
        self.port = int(open(active).read().splitlines()[0])
        return self

    def _json(self, path, method='GET'):
        import urllib.request
        req = urllib.request.Request('http://127.0.0.1:%d%s' % (self.port, path), method=method)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.load(resp)

    def open(self, url):
        """A new tab on ``url``; returns the Page once its load event fired."""
        target = self._json('/json/new?about:blank', method='PUT')
        page = Page(target['webSocketDebuggerUrl'], self.timeout)
        for domain in ('Page', 'Runtime', 'Log', 'Network'):
            page.send(domain + '.enable')
        page.send('Page.navigate', url=url)
        page.wait_event('Page.loadEventFired')
        return page

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
