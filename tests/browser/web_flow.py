#!/usr/bin/env python3
"""ferry's web interface in headless Chromium, driven by Selenium.

Run by tests/it/browser.rs, which starts ferryd and checks the server's
side afterwards. Arguments: BASE_URL USER PASSWORD WORK_DIR SHOT_DIR.
WORK_DIR holds the files to upload (one.txt, two.bin), and receives the
downloads (WORK_DIR/downloads). Prints one JSON object on success; any
failed step raises, and the exit status is not 0.

Every wait is bounded (WAIT seconds), and the whole run is too (the Rust
side kills it after its own deadline).
"""

import hashlib
import http.server
import json
import os
import socket
import sys
import threading
import time

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 15
HOSTILE = "<img src=x onerror=alert(1)>.html"

base, user, password, work, shots = sys.argv[1:6]
downloads = os.path.join(work, "downloads")
os.makedirs(downloads, exist_ok=True)
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for flag in [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
    "--user-data-dir=" + os.path.join(work, "profile"),
]:
    options.add_argument(flag)
options.add_experimental_option(
    "prefs",
    {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    },
)
service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(service=service, options=options)
driver.set_page_load_timeout(WAIT)
# A page that reloads under a wait (after uploads) is looked at again.
wait = WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException])
result = {"steps": []}
shot_number = [0]


def shot(name):
    shot_number[0] += 1
    path = os.path.join(shots, "%02d-%s.png" % (shot_number[0], name))
    driver.save_screenshot(path)
    result["steps"].append(name)


def no_alert():
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    raise AssertionError("a script of the page's data ran: alert %r" % text)


def unlabelled_inputs():
    """Visible inputs and buttons without a label or an accessible name."""
    return driver.execute_script(
        """
        return Array.from(document.querySelectorAll('input:not([type=hidden]), button'))
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                       && !(e.tagName === 'BUTTON' && e.textContent.trim()))
          .map(e => e.outerHTML);
        """
    )


def names_listed():
    # The list is drawn again after an upload, a drop or a delete: a link
    # found a moment before may be gone when its text is read. Chromium
    # says so as a stale element or, between two of its calls, as a node
    # that "does not belong to the document"; either way, look again.
    for _ in range(50):
        try:
            return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "td.name a")]
        except StaleElementReferenceException:
            pass
        except WebDriverException as err:
            if "does not belong to the document" not in str(err):
                raise
        time.sleep(0.1)
    raise TimeoutError("the file list kept changing for 5 s")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


RESUME_CUT = 1024 * 1024
cut_done = threading.Event()


def cutting_proxy(target_port):
    """A TCP proxy to ferryd that cuts every connection carrying a PUT of
    resume.bin from its start (?resumable) once RESUME_CUT bytes of it went
    through (both ways closed, as a dropped network does): Chromium sends
    such a PUT again once by itself, so only the script's continuation
    (?offset=) can complete it. Everything else passes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def close(*socks):
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def pipe(src, dst, upstream):
        seen = None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    if seen is None and b"PUT /files/resume.bin?resumable" in data:
                        seen = 0
                    if seen is not None:
                        seen += len(data)
                        if seen > RESUME_CUT:
                            cut_done.set()
                            break
                dst.sendall(data)
        except OSError:
            pass
        close(src, dst)

    def serve():
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", target_port))
            threading.Thread(target=pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client, False), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


try:
    # Downloads in headless mode go where the test says.
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads}
    )

    # 1. The login page, then a login.
    driver.get(base + "/")
    wait.until(EC.presence_of_element_located((By.ID, "user")))
    shot("login")
    # By keyboard alone: the user field has the focus, Tab, Enter.
    active = driver.switch_to.active_element
    assert active.get_attribute("id") == "user", "the user field has the focus"
    active.send_keys(user + Keys.TAB)
    driver.switch_to.active_element.send_keys(password + Keys.ENTER)
    wait.until(EC.presence_of_element_located((By.ID, "files")))
    assert driver.find_element(By.ID, "upload").is_displayed(), "upload area shown"
    no_alert()
    # The hostile name, planted by the test, is text.
    assert HOSTILE in names_listed(), names_listed()
    assert not driver.find_elements(By.CSS_SELECTOR, "td.name img"), "markup ran"
    assert not unlabelled_inputs(), unlabelled_inputs()
    shot("files")

    # 2. Two files through the file input at once; progress, then the list.
    one = os.path.join(work, "one.txt")
    two = os.path.join(work, "two.bin")
    driver.find_element(By.ID, "files").send_keys(one + "\n" + two)
    wait.until(lambda d: "one.txt" in names_listed() and "two.bin" in names_listed())
    shot("uploaded")

    # Drag and drop: a drop event carrying a file, as the browser makes
    # one when a file is dropped on the page.
    driver.execute_script(
        """
        var dt = new DataTransfer();
        dt.items.add(new File(["dropped on the page\\n"], "dropped.txt", {type: "text/plain"}));
        var drop = new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true});
        document.getElementById("drop").dispatchEvent(drop);
        """
    )
    wait.until(lambda d: "dropped.txt" in names_listed())
    shot("dropped")

    # 3. Download one and compare its SHA-256.
    link = driver.find_element(
        By.XPATH, "//tr[td[@class='name']/a[text()='two.bin']]//a[text()='Download']"
    )
    link.click()
    target = os.path.join(downloads, "two.bin")
    deadline = time.time() + WAIT
    while not (os.path.exists(target) and os.path.getsize(target) == os.path.getsize(two)):
        assert time.time() < deadline, "no download in %s: %s" % (downloads, os.listdir(downloads))
        time.sleep(0.1)
    assert sha256(target) == sha256(two), "downloaded bytes differ"
    result["downloaded_sha256"] = sha256(target)

    # 4. Preview a text file: its page (SHA-256, the first bytes), then inline.
    driver.find_element(By.LINK_TEXT, "one.txt").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "pre.head")))
    with open(one, "rb") as f:
        text = f.read().decode()
    assert driver.find_element(By.CSS_SELECTOR, "pre.head").text.strip() == text.strip()
    assert driver.find_element(By.CSS_SELECTOR, "code.sha256").text == sha256(one)
    assert not unlabelled_inputs(), unlabelled_inputs()
    shot("file-page")
    driver.find_element(By.LINK_TEXT, "Open in the browser").click()
    wait.until(lambda d: text.strip() in d.find_element(By.TAG_NAME, "body").text)
    shot("inline-text")

    # 5. The hostile file's own page and inline view: text, nothing runs.
    driver.get(base + "/")
    wait.until(EC.presence_of_element_located((By.ID, "files")))
    driver.find_element(By.LINK_TEXT, HOSTILE).click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "h1.filename")))
    assert driver.find_element(By.CSS_SELECTOR, "h1.filename").text == HOSTILE
    no_alert()
    shot("hostile-page")
    driver.find_element(By.LINK_TEXT, "Open in the browser").click()
    wait.until(lambda d: "<script>" in d.find_element(By.TAG_NAME, "body").text)
    no_alert()
    shot("hostile-inline")

    # 6. A page of another site posts a delete form: refused, file kept.
    page = (
        "<!DOCTYPE html><form method=post action='%s/web/delete'>"
        "<input name=name value='one.txt'><input name=confirm value=yes>"
        "<button id=go>go</button></form>" % base
    ).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    driver.get("http://127.0.0.2:%d/" % evil.server_address[1])
    driver.find_element(By.ID, "go").click()
    wait.until(lambda d: d.current_url.startswith(base))
    shot("cross-site-post")
    evil.shutdown()
    driver.get(base + "/")
    wait.until(EC.presence_of_element_located((By.ID, "files")))
    assert "one.txt" in names_listed(), "a cross-site post deleted a file"

    # 7. A new folder, and a file moved into it from the file's page.
    field = driver.find_element(By.ID, "folder-name")
    field.send_keys("docs")
    field.submit()
    wait.until(lambda d: "docs/" in names_listed())
    shot("new-folder")
    driver.find_element(By.LINK_TEXT, "two.bin").click()
    target_field = wait.until(EC.presence_of_element_located((By.ID, "move-to")))
    target_field.clear()
    target_field.send_keys("docs/two.bin")
    target_field.submit()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "nav.crumbs li[aria-current]"))
    assert names_listed() == ["two.bin"], names_listed()
    crumbs = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "nav.crumbs li")]
    assert crumbs == ["Files", "docs"], crumbs
    shot("moved-into-folder")
    driver.find_element(By.CSS_SELECTOR, "nav.crumbs a").click()
    wait.until(lambda d: "two.bin" not in names_listed() and "docs/" in names_listed())

    # 8. Delete one, after the question.
    row = "//tr[td[@class='name']/a[text()='one.txt']]"
    driver.find_element(By.XPATH, row + "//button[text()='Delete']").click()
    alert = wait.until(EC.alert_is_present())
    assert "one.txt" in alert.text
    alert.accept()
    wait.until(lambda d: "one.txt" not in names_listed())
    shot("deleted")

    # 9. Readable at phone width.
    driver.set_window_size(390, 844)
    driver.refresh()
    wait.until(EC.presence_of_element_located((By.ID, "files")))
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, "the page scrolls sideways at phone width: %d" % width
    shot("phone")
    driver.set_window_size(1200, 900)

    # 10. An upload whose connection drops continues from the bytes the
    # server kept: the page is used through a proxy that cuts uploads of
    # resume.bin from its start after RESUME_CUT bytes.
    proxy_port = cutting_proxy(int(base.rsplit(":", 1)[1]))
    driver.get("http://127.0.0.1:%d/" % proxy_port)
    wait.until(EC.presence_of_element_located((By.ID, "files")))
    driver.find_element(By.ID, "files").send_keys(os.path.join(work, "resume.bin"))
    wait.until(lambda d: "resume.bin" in names_listed())
    assert cut_done.is_set(), "the proxy never cut the upload"
    shot("resumed")
    driver.get(base + "/")
    wait.until(EC.presence_of_element_located((By.ID, "files")))

    # 11. Log out.
    driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait.until(EC.presence_of_element_located((By.ID, "password")))
    shot("logged-out")
    result["ok"] = True
finally:
    driver.quit()

print(json.dumps(result))
