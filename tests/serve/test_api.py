"""The HTTP API against the service running in this process: answers equal the Python
pipeline's (and `raid detect`'s) for the same bytes and key; the batch form; provenance,
health, the OpenAPI schema and the page."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from servekit import call, jpeg, multipart, png, post_file

from raid.serve.app import page_html


def expected(pipeline, data: bytes, key: str):
    (pred,) = pipeline.predict([data], keys=[key])
    assert not pred.error
    return pred


def check_equal(answer: dict, pred) -> None:
    assert answer["filename"] == pred.key
    assert answer["p_generated"] == pytest.approx(pred.p_generated, abs=1e-6)
    assert answer["verdict"] == pred.verdict
    top, left, size = pred.patch
    assert answer["patch"] == {"top": top, "left": left, "size": size}


def test_detect_multipart_equals_the_pipeline(service, pipeline):
    for name, data in (("cat.png", png("a")), ("dog.jpg", jpeg("b"))):
        status, answer = post_file(service, data, name)
        assert status == 200, answer
        check_equal(answer, expected(pipeline, data, name))
        assert answer["model"]["raid_version"]
        assert 0.0 <= answer["p_generated"] <= 1.0


def test_the_key_is_the_file_name_and_seeds_the_patch(service, pipeline):
    data = png("big", 300, 280)  # room for many patch positions: keys matter
    raw = {"Content-Type": "image/png"}
    answers = {
        "named.png": call(service, "POST", "/v1/detect?filename=named.png", data, raw),
        "header.png": call(service, "POST", "/v1/detect", data,
                           {**raw, "X-Filename": "header.png"}),
        "image": call(service, "POST", "/v1/detect", data, raw),  # the default key
        "path.png": post_file(service, data, "C:\\photos\\path.png"),  # last component only
    }
    for key, (status, answer) in answers.items():
        assert status == 200, answer
        check_equal(answer, expected(pipeline, data, key))
    patches = {json.dumps(a["patch"]) for _, a in answers.values()}
    assert len(patches) > 1, "different keys should draw different patches"


def test_detect_equals_raid_detect(service, bundle, tmp_path):
    from raid.cli.main import main

    data = png("cli", 150, 170)
    (tmp_path / "shot.png").write_bytes(data)
    out = tmp_path / "out.json"
    assert main(["detect", "--model", str(bundle), str(tmp_path / "shot.png"),
                 "--accelerator", "cpu", "--num-workers", "0", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["images"]
    status, answer = post_file(service, data, "shot.png")
    assert status == 200, answer
    assert answer["p_generated"] == pytest.approx(row["p_generated"], abs=1e-6)
    assert answer["verdict"] == row["verdict"]


def test_batch_scores_each_file_and_reports_bad_ones(service, pipeline):
    files = [("files", "one.png", png("one")), ("files", "bad.png", b"not an image at all"),
             ("files", "two.jpg", jpeg("two")), ("files", "cut.png", png("cut")[:300])]
    body, ctype = multipart(files)
    status, answer = call(service, "POST", "/v1/detect/batch", body, {"Content-Type": ctype})
    assert status == 200, answer
    results = answer["results"]
    assert [r["filename"] for r in results] == ["one.png", "bad.png", "two.jpg", "cut.png"]
    for i in (0, 2):
        check_equal(results[i], expected(pipeline, files[i][2], files[i][1]))
        assert "error" not in results[i]
    assert results[1]["status"] == 415 and "not an image" in results[1]["error"]
    assert results[3]["status"] == 422 and results[3]["error"]
    assert results[1]["p_generated"] is None and results[3]["patch"] is None


def test_small_image_is_scored_whole(service, pipeline):
    data = png("tiny", 40, 30)  # smaller than the tiny AIM's 56-pixel patch
    status, answer = post_file(service, data, "small.png")
    assert status == 200, answer
    (pred,) = pipeline.predict([data], keys=["small.png"])
    assert answer["patch"] is None and pred.patch is None
    assert answer["p_generated"] == pytest.approx(pred.p_generated, abs=1e-6)


def test_model_health_and_schema(service, pipeline, bundle):
    status, answer = call(service, "GET", "/v1/model")
    assert status == 200
    model = answer["model"]
    info = json.loads(json.dumps(pipeline.info, default=str))
    for key in ("raid_version", "aim", "checkpoints", "svm"):
        assert model[key] == info[key]
    assert re.fullmatch(r"[0-9a-f]{64}", model["checkpoints"]["backbone"])
    assert answer["service"]["max_pixels"] == 2_000_000
    assert "api_key" not in answer["service"]
    assert call(service, "GET", "/health")[0] == 200
    status, schema = call(service, "GET", "/openapi.json")
    assert status == 200
    for path in ("/v1/detect", "/v1/detect/batch", "/v1/model"):
        assert path in schema["paths"]
    body = schema["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*"} <= set(body)


def test_page_is_served_and_self_contained(service):
    from urllib.request import urlopen

    with urlopen(service + "/") as response:
        html = response.read().decode()
        assert response.headers["content-type"].startswith("text/html")
    assert html == page_html()
    # no remote resources: nothing fetched from another origin, no fonts, no CDN
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"@import|url\(|@font-face|<link\b", html)
    assert "v1/detect" in html and "v1/detect/batch" in html


def test_concurrent_answers_match_their_own_images(service, pipeline):
    from raid.serve.client import load

    images = [(f"c{i}.png", png(f"c{i}", 64 + 8 * i, 90)) for i in range(6)]
    result = load(service, images, clients=4, requests=6)
    assert not result.failures and len(result.ok) == 24
    want = {k: expected(pipeline, d, k).p_generated for k, d in images}
    got = np.array([a.body["p_generated"] for a in result.ok])
    ref = np.array([want[a.key] for a in result.ok])
    assert np.abs(got - ref).max() <= 1e-6
