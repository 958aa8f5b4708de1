"""tools/web_demo.py end to end: the Gradio demo on the tiny model, driven in real headless Chromium.

The test installs what it needs: Debian's ``chromium`` + ``chromium-driver`` (apt-get) when /usr/bin/chromium is
missing, and the ``selenium`` / ``gradio`` Python packages when they are not importable. It is skipped only when
the browser cannot be installed, with the reason. The server runs in a subprocess on 127.0.0.1 and a free port and
is stopped at the end, within a bounded time.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_tool, write_malicious_checkpoint

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
GRADIO_SPEC = "gradio>=5.50,<6"  # = setup.py's `demo` extra
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
)  # fmt: skip
SERVER_START_TIMEOUT_S = 240
ANSWER_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20


def _first_existing(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None)


def _install_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages if needed; skip if impossible."""
    chromium, driver = _first_existing(CHROMIUM_CANDIDATES), _first_existing(CHROMEDRIVER_CANDIDATES)
    if chromium and driver:
        return chromium, driver
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("chromium/chromedriver are missing and apt-get is not available to install them")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            pytest.skip("chromium/chromedriver are missing and installing them needs root (no sudo)")
        prefix = ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in ([*prefix, apt, "update"], [*prefix, apt, "install", "-y", "chromium", "chromium-driver"]):
        try:
            run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            pytest.skip(f"installing the browser timed out: {' '.join(cmd)}")
        log.append(run.stdout[-1500:] + run.stderr[-1500:])
        if run.returncode != 0:
            pytest.skip(f"cannot install chromium/chromium-driver ({' '.join(cmd)} exited {run.returncode}): "
                        f"{log[-1].strip()[-500:]}")
    chromium, driver = _first_existing(CHROMIUM_CANDIDATES), _first_existing(CHROMEDRIVER_CANDIDATES)
    if not (chromium and driver):
        pytest.skip(f"apt-get installed chromium but no browser/driver binary was found: {log[-1][-500:]}")
    return chromium, driver


def _ensure_package(module: str, spec: str) -> None:
    """Import ``module``, pip-installing ``spec`` first if needed (the test installs what it needs)."""
    try:
        importlib.import_module(module)
        return
    except ImportError:
        pass
    run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], capture_output=True, text=True,
                         timeout=900, check=False)
    assert run.returncode == 0, f"pip install {spec} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    importlib.invalidate_caches()
    importlib.import_module(module)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it is still there after STOP_TIMEOUT_S."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def demo_server(tiny_hf_videoccam: Path, tmp_path: Path):
    """The demo in a subprocess on 127.0.0.1:<free port>; yields its URL; always stopped at the end."""
    _ensure_package("gradio", GRADIO_SPEC)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = tmp_path / "web_demo.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp_path / "gradio_tmp"), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "tools/web_demo.py", "--model", str(tiny_hf_videoccam), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--num-frames", "8", "--max-new-tokens", "8"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode} before serving:\n{log_path.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not answer on {url} within {SERVER_START_TIMEOUT_S}s:\n"
                            f"{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)
        assert proc.poll() is not None, "the demo server is still running"


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Chromium through chromedriver (no Selenium Manager download: the driver path is given)."""
    chromium, chromedriver = _install_browser()
    _ensure_package("selenium", "selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium_profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver, log_output=str(tmp_path / "driver.log")),
                              options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _messages(driver, role: str) -> list[str]:
    """Texts of the chat's ``user`` or ``bot`` messages, read in one script call (no stale element references
    while the chat re-renders)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim());",
        f"#chatbot [data-testid={role}]",
    )


def _requested_urls(driver) -> set[str]:
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def _write_gif(path: Path, num_frames: int = 12) -> Path:
    """A small animated GIF: a square changing colour and drifting."""
    from PIL import Image, ImageDraw

    colours = [(220, 40, 40), (40, 190, 70), (40, 90, 230)]
    frames = []
    for i in range(num_frames):
        frame = Image.new("RGB", (64, 64), (24, 24, 32))
        ImageDraw.Draw(frame).rectangle([8 + i, 12, 36 + i, 40], fill=colours[i * len(colours) // num_frames])
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


@pytest.mark.slow
def test_upload_video_ask_and_see_the_answer(demo_server: str, browser, synthetic_data: Path, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    video = min((synthetic_data / "videos").glob("val_*.mp4"))
    wait = WebDriverWait(browser, ANSWER_TIMEOUT_S)
    browser.get(demo_server)

    # upload a synthetic mp4: the page decodes it and shows the sampled frames
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#media-upload input[type=file]")))
    upload.send_keys(str(video))
    wait.until(lambda d: "Loaded" in d.find_element(By.ID, "media-status").text)
    assert f"{video.name}: video, 8 frame(s)" in browser.find_element(By.ID, "media-status").text

    # ask, click Send, see the streamed answer appear
    question = "Which shape appears first?"
    browser.find_element(By.CSS_SELECTOR, "#message textarea").send_keys(question)
    browser.find_element(By.ID, "send-btn").click()
    wait.until(lambda d: any(text.strip() for text in _messages(d, "bot")))
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#message textarea").get_attribute("value") == "")
    assert _messages(browser, "user") == [question]
    shot = tmp_path / "web_demo.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")

    # a second turn through Enter: multi-turn history in the chat
    browser.find_element(By.CSS_SELECTOR, "#message textarea").send_keys("And which one is last?" + Keys.ENTER)
    wait.until(lambda d: len([t for t in _messages(d, "bot") if t.strip()]) == 2)
    assert _messages(browser, "user") == [question, "And which one is last?"]

    # Clear empties the chat
    browser.find_element(By.ID, "clear-btn").click()
    wait.until(lambda d: not _messages(d, "bot") and not _messages(d, "user"))

    # remove the video, upload a GIF: a new conversation about it
    browser.find_element(By.CSS_SELECTOR, "#media-upload button[aria-label=Clear]").click()
    wait.until(lambda d: "No media" in d.find_element(By.ID, "media-status").text)
    gif = _write_gif(tmp_path / "shapes.gif")
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#media-upload input[type=file]")))
    upload.send_keys(str(gif))
    wait.until(lambda d: "shapes.gif: video, 8 frame(s)" in d.find_element(By.ID, "media-status").text)
    browser.find_element(By.CSS_SELECTOR, "#message textarea").send_keys("What colour comes first?")
    browser.find_element(By.ID, "send-btn").click()
    wait.until(lambda d: any(text.strip() for text in _messages(d, "bot")))
    assert _messages(browser, "user") == ["What colour comes first?"]

    # nothing but the local server was contacted (no CDN, fonts, telemetry)
    external = {u for u in _requested_urls(browser)
                if u.startswith(("http:", "https:", "ws:", "wss:")) and not u.startswith(("http://127.0.0.1",
                                                                                          "ws://127.0.0.1"))}
    assert not external, f"the page contacted other hosts: {sorted(external)}"


def test_bad_arguments_fail_before_loading_anything(tmp_path: Path, capsys):
    web_demo = load_tool("web_demo")
    assert web_demo.main(["--port", "7860"]) == 2
    assert "no model" in capsys.readouterr().err
    assert web_demo.main(["--model", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="the demo extra (gradio) is not installed")
def test_checkpoint_that_would_run_code_is_refused_before_serving(tiny_trained, tmp_path: Path, capsys):
    from tests.export.helpers import STAGE2, as_cli_options

    marker = tmp_path / "payload_ran"
    evil = write_malicious_checkpoint(tmp_path / "iter_2.pth", marker,
                                      {"state_dict": tiny_trained.model.state_dict()})  # fmt: skip
    argv = ["--config", str(STAGE2), "--checkpoint", str(evil), "--cfg-options", *as_cli_options(tiny_trained.options),
            "--port", str(_free_port())]  # fmt: skip
    assert load_tool("web_demo").main(argv) == 2
    assert f"error: refusing to load checkpoint '{evil}': it needs the global posix.system" in capsys.readouterr().err
    assert not marker.exists()
