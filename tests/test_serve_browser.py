"""treadmill serve in a real browser: headless Chromium types an input, presses the button, reads the page.

By hand, against a trained run, with the screenshot kept for the docs:
    TREADMILL_SERVE_RUN=runs/g2p-demo TREADMILL_SERVE_INPUT=treadmill \\
    TREADMILL_SCREENSHOT=docs/images/serve_g2p.png pytest tests/test_serve_browser.py -k seq2seq
"""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_runs import GPT, SEQ2SEQ, free_port, train_run

from treadmill.cli.generate import generate_lines
from treadmill.cli.run_dir import load_run
from treadmill.cli.serve import servable_from_run

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Debian's chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver "
                    "(.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if os.environ.get("TREADMILL_SERVE_RUN"):
        return {"seq2seq": Path(os.environ["TREADMILL_SERVE_RUN"])}
    root = tmp_path_factory.mktemp("browser")
    return {"seq2seq": train_run(root, SEQ2SEQ, "s2s"), "gpt": train_run(root, GPT, "gpt")}


@contextlib.contextmanager
def serve_command(run_dir: Path):
    """`treadmill serve RUN_DIR --port P` in a subprocess, until it answers on 127.0.0.1:P."""
    import urllib.request

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "treadmill.cli", "serve", str(run_dir), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else "serve exited"
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "treadmill serve did not answer within 120 s"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _type_and_press(driver, text: str) -> None:
    box = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#input textarea"))
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "submit").click()


def _value(driver, element_id: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f"#{element_id} textarea").get_attribute("value") or ""


def test_seq2seq_page_in_chromium_answers_as_generate(browser, runs, tmp_path):
    run_dir = runs["seq2seq"]
    text = os.environ.get("TREADMILL_SERVE_INPUT", "a1 a2 a3 a4")
    (expected,) = generate_lines(run_dir, [text], [])  # what `treadmill generate RUN_DIR TEXT` prints
    with serve_command(run_dir) as url:
        browser.get(url)
        _type_and_press(browser, "")  # bad input first: a message, and the server keeps serving
        WebDriverWait(browser, 60).until(lambda d: "empty" in d.find_element(By.ID, "status").text)
        _type_and_press(browser, text)
        WebDriverWait(browser, 60).until(lambda d: _value(d, "best"))
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attention img, #attention svg, "
                                                                                    "#attention canvas"))
        answer = _value(browser, "best")
        table = browser.find_element(By.ID, "nbest").text
        screenshot = Path(os.environ.get("TREADMILL_SCREENSHOT", tmp_path / "serve_seq2seq.png"))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(screenshot))
    assert answer == expected
    assert expected in table
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank image


def test_lm_page_in_chromium_streams_in_several_steps(browser, runs, tmp_path):
    if "gpt" not in runs:
        pytest.skip("TREADMILL_SERVE_RUN names one seq2seq run; the LM page needs the test's GPT run")
    from treadmill.serve.app import build_app

    servable = servable_from_run(load_run(runs["gpt"]))
    # A short pause per token, so a browser polling the page sees the text grow: the tiny model
    # alone would finish before the first repaint.
    servable.token_delay = 0.12
    servable.generation.update(min_len=6, max_len=24)  # the page's "max new tokens" starts at 24
    port = free_port()
    app = build_app(servable)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        _type_and_press(browser, "a1 a2 a3")
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while "Done." not in browser.find_element(By.ID, "status").text:
            assert time.monotonic() < deadline, f"no end of the stream; saw {seen}"
            value = _value(browser, "output")
            if value and (not seen or seen[-1] != value):
                seen.append(value)
            time.sleep(0.03)
        final = _value(browser, "output")
        browser.save_screenshot(str(tmp_path / "serve_lm.png"))
        # Stop: a longer generation, cancelled after its first tokens, grows no more.
        servable.generation.update(min_len=20)
        time.sleep(1.0)  # the finished event's last message settles; a click while it is pending is dropped
        browser.find_element(By.ID, "submit").click()
        states = []
        deadline = time.monotonic() + 60
        while not (2 <= len(_value(browser, "output").split()) < len(final.split())):
            states.append((browser.find_element(By.ID, "status").text, _value(browser, "output")))
            assert time.monotonic() < deadline, f"the second generation did not start: {states[-5:]}"
            time.sleep(0.05)
        browser.find_element(By.ID, "stop").click()
        WebDriverWait(browser, 30).until(lambda d: "Stopped." in d.find_element(By.ID, "status").text)
        stopped = _value(browser, "output")
        time.sleep(1.0)  # several tokens' worth of time
        after = _value(browser, "output")
    finally:
        app.close()
    assert len(seen) >= 3, seen  # the answer appeared in several steps
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:], strict=False))
    assert final.startswith(seen[-1]) and len(final.split()) >= 6
    assert after == stopped and len(stopped.split()) < 20
