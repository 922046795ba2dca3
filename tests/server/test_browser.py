"""The web page in headless Chromium (Debian's chromium + chromium-driver, driven by selenium): submit a
prompt, watch the progress, and see the finished video play inline."""
import os
import shutil
import tempfile
import time

from common import KEY, TMP, URL, Server, Skip, jrequest


def find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def chrome():
    chromium = find("chromium", "chromium-browser")
    driver_bin = find("chromedriver")
    if not chromium or not driver_bin:
        raise Skip("chromium and chromium-driver are not installed (scripts/setup.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--autoplay-policy=no-user-gesture-required", "--no-first-run", "--mute-audio"):
        opts.add_argument(a)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium fetch a driver
    return webdriver.Chrome(service=Service(driver_bin), options=opts)


def test_page_generates_and_plays():
    drv = chrome()
    from selenium.webdriver.common.by import By
    try:
        drv.set_page_load_timeout(30)
        drv.get(URL + "/")
        key = drv.find_element(By.ID, "apikey")
        key.clear()
        key.send_keys(KEY)
        drv.execute_script("document.getElementById('apikey').dispatchEvent(new Event('change'))")
        drv.find_element(By.ID, "prompt").send_keys("a paper boat on a pond")
        for ident, value in (("width", "48"), ("height", "32"), ("frames", "5"), ("steps", "2"), ("seed", "7")):
            el = drv.find_element(By.ID, ident)
            el.clear()
            el.send_keys(value)
        drv.find_element(By.ID, "generate").click()
        t0 = time.time()
        state = None
        while time.time() - t0 < 90:
            state = drv.execute_script(
                "const p = document.getElementById('player');"
                "return {src: p.src, ready: p.readyState, paused: p.paused, t: p.currentTime,"
                " played: p.played.length, w: p.videoWidth, h: p.videoHeight,"
                " status: document.getElementById('status').textContent,"
                " error: document.getElementById('error').textContent,"
                " cards: document.querySelectorAll('#gallery .card').length};")
            if state["error"]:
                raise AssertionError("the page shows an error: %s" % state)
            if state["ready"] >= 2 and state["played"] > 0 and state["t"] > 0:
                break
            time.sleep(0.25)
        else:
            raise AssertionError("the video did not play: %s" % state)
        assert state["w"] == 48 and state["h"] == 32, state
        assert state["src"].startswith("blob:") and "completed" in state["status"], state
        assert state["cards"] >= 1
    finally:
        drv.quit()


def test_page_lora_field():
    """With --lora-dir the page offers the folder's adapters; the job it creates carries the chosen one."""
    lora_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "lora")
    drv = chrome()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    srv = Server(os.path.join(tempfile.mkdtemp(dir=TMP, prefix="page-lora-"), "data"), "--lora-dir", lora_dir)
    try:
        srv.start()
        drv.set_page_load_timeout(30)
        drv.get(srv.url + "/")
        t0 = time.time()
        while not drv.find_element(By.ID, "lora-row").is_displayed():
            assert time.time() - t0 < 20, "the LoRA row stays hidden"
            time.sleep(0.1)
        Select(drv.find_element(By.ID, "lora")).select_by_value("peft_high.safetensors")
        Select(drv.find_element(By.ID, "lora-target")).select_by_value("both")
        drv.find_element(By.ID, "prompt").send_keys("a kite")
        for ident, value in (("width", "48"), ("height", "32"), ("frames", "5"), ("steps", "2"),
                             ("lora-scale", "0.5")):
            el = drv.find_element(By.ID, ident)
            el.clear()
            el.send_keys(value)
        drv.find_element(By.ID, "generate").click()
        t0 = time.time()
        while True:
            s, lst = jrequest("GET", "/v1/videos", url=srv.url, key="")
            if lst["data"]:
                break
            err = drv.find_element(By.ID, "error").text
            assert not err and time.time() - t0 < 20, "no job created; the page says: %r" % err
            time.sleep(0.1)
        assert lst["data"][0]["loras"] == [{"name": "peft_high.safetensors", "scale": 0.5, "target": "both"}], lst
    finally:
        drv.quit()
        if srv.proc:
            assert srv.stop() == 0
    srv.check_clean_log()
