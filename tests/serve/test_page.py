"""The web page in a real headless Chromium (Debian's `chromium`, driven by Playwright):
upload an image, read P(generated) and the outlined patch from the page, compare them with
the API's answer, and save a screenshot (to $RAID_SCREENSHOT when set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from servekit import call, png, post_file

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser",
                             shutil.which("chromium") or "") if p and Path(p).exists()), None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed "
                                "(.ci/setup-browser installs Debian's chromium)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # a dev dependency: missing = failure

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    outside = []
    page.on("request", lambda r: None if r.url.startswith((url, "blob:", "data:"))
            else outside.append(r.url))
    page.goto(url + "/")
    page.wait_for_selector("#model:not(:has-text('Loading'))")
    return page, outside


def test_upload_one_image_shows_probability_and_patch(browser, service, tmp_path):
    data = png("page", 360, 480)
    image = tmp_path / "street.png"
    image.write_bytes(data)
    status, api = post_file(service, data, "street.png")
    assert status == 200 and api["patch"], api

    model = call(service, "GET", "/v1/model")[1]["model"]
    page, outside = open_page(browser, service)
    assert f"AIM {model['aim']['arch']} " in page.inner_text("#model")
    page.set_input_files("#file", str(image))
    page.wait_for_selector(".card .frame[data-ready='1'] .box")
    shown = float(page.inner_text("#p-generated"))
    assert shown == pytest.approx(api["p_generated"], abs=5e-5)  # 4 decimals shown
    assert page.inner_text(".card .verdict") == api["verdict"]

    box = page.query_selector(".card .box")
    assert {k: int(box.get_attribute(f"data-{k}")) for k in ("top", "left", "size")} \
        == api["patch"]
    # the outline sits where the patch is on the displayed (scaled) image
    img = page.query_selector(".card .frame img").bounding_box()
    rect = box.bounding_box()
    scale_x, scale_y = img["width"] / 480, img["height"] / 360
    patch = api["patch"]
    assert rect["x"] - img["x"] == pytest.approx(patch["left"] * scale_x, abs=1.5)
    assert rect["y"] - img["y"] == pytest.approx(patch["top"] * scale_y, abs=1.5)
    assert rect["width"] == pytest.approx(patch["size"] * scale_x, abs=1.5)
    assert rect["height"] == pytest.approx(patch["size"] * scale_y, abs=1.5)
    assert not outside, f"the page fetched from elsewhere: {outside}"

    shot = Path(os.environ.get("RAID_SCREENSHOT") or tmp_path / "screenshot.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_several_images_give_a_table(browser, service, tmp_path):
    files = []
    for i, (h, w) in enumerate(((120, 150), (200, 130), (90, 90))):
        files.append(tmp_path / f"pic{i}.png")
        files[-1].write_bytes(png(f"table{i}", h, w))
    files.append(tmp_path / "notes.png")
    files[-1].write_bytes(b"just text, not an image")

    page, _ = open_page(browser, service)
    page.set_input_files("#file", [str(f) for f in files])
    page.wait_for_selector("#results tbody tr:nth-child(4)")
    rows = page.query_selector_all("#results tbody tr")
    assert [r.query_selector_all("td")[1].inner_text() for r in rows] == \
        [f.name for f in files]
    for row, f in zip(rows[:3], files[:3]):
        status, api = post_file(service, f.read_bytes(), f.name)
        assert float(row.query_selector("td.p").inner_text()) == \
            pytest.approx(api["p_generated"], abs=5e-5)
    assert "not an image" in rows[3].inner_text()
    page.close()


def test_page_reports_an_error(browser, service, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"<html>not an image</html>")
    page, _ = open_page(browser, service)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error")
    assert "not an image" in page.inner_text("#status")
    page.close()
