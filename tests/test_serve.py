"""`headstart serve`: every endpoint, every kind of bad input (a 4xx with a JSON reason, never a
500), the same probabilities as `headstart predict`, batching, and the CLI on a real socket."""

import base64
import io
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import headstart
from headstart.serve.app import create_app
from headstart.serve.batcher import GreedyBatcher
from headstart.web.hosts import host_name, names_for_bind


@pytest.fixture(scope="module")
def bundle(small_hymenoptera, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "model"
    clf = headstart.train(small_hymenoptera, out=out, hidden=(16,))
    clf.export("onnx", out.parent / "model.onnx")
    return out


@pytest.fixture(scope="module")
def images(small_hymenoptera) -> list[Path]:
    return sorted((small_hymenoptera / "val").rglob("*.jpg"))


@pytest.fixture(scope="module")
def client(bundle):
    app = create_app(
        headstart.load(bundle), name="ants-bees", max_images=8, max_image_bytes=2 << 20, max_body_bytes=4 << 20
    )
    with TestClient(app, base_url="http://localhost") as c:
        yield c


def files(*paths, name="files"):
    return [(name, (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def test_health_and_model_metadata(client):
    assert client.get("/v1/health/live").json() == {"status": "live"}
    assert client.get("/v1/health/ready").json() == {"status": "ready"}
    meta = client.get("/v1/model").json()
    assert meta["labels"] == ["ants", "bees"] and meta["backbone"] == "mobilenet_v2"
    assert meta["preprocessing"]["image_size"] == 224 and 0 <= meta["metrics"]["accuracy"] <= 1
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/base64", "/v1/model", "/v1/health/ready"} <= set(schema["paths"])


@pytest.mark.parametrize("model_file", ["model", "model.onnx"])
def test_same_probabilities_as_headstart_predict(bundle, images, model_file):
    predictor = headstart.load(bundle.parent / model_file)
    expected = predictor.predict(images)
    with TestClient(create_app(predictor), base_url="http://localhost") as c:
        multipart = c.post("/v1/predict", files=files(*images[:6]), params={"top_k": 2}).json()["predictions"]
        b64 = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in images[6:12]]
        as_json = c.post("/v1/predict/base64", json={"images": b64}).json()["predictions"]
    got = multipart + as_json
    assert [g["name"] for g in got] == [p.name for p in images[:12]]
    for g, e in zip(got, expected):
        assert g["label"] == e.label and len(g["top"]) in (2, 3)
        for label in predictor.classes:
            assert abs(g["probabilities"][label] - e.probabilities[label]) <= 1e-6


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (17_000, 17_000), 1).save(buf, "PNG")
    return buf.getvalue()


def test_bad_input_is_a_4xx_with_a_reason_never_a_500(client, images):
    jpeg = images[0].read_bytes()
    cases = {
        "not an image": (
            422,
            "not a recognised image format",
            dict(files=[("files", ("a.txt", b"hello", "text/plain"))]),
        ),
        "truncated": (422, "corrupt or truncated", dict(files=[("files", ("t.jpg", jpeg[:600], "image/jpeg"))])),
        "empty": (422, "empty file", dict(files=[("files", ("e.jpg", b"", "image/jpeg"))])),
        "bomb": (422, "too large to decode safely", dict(files=[("files", ("bomb.png", _bomb(), "image/png"))])),
        "image too big": (413, "limit", dict(files=[("files", ("big.jpg", jpeg + bytes(3 << 20), "image/jpeg"))])),
        "too many": (413, "the limit is 8", dict(files=files(*images[:9]))),
        "body too big": (
            413,
            "request body",
            dict(files=[("files", (f"{i}.jpg", bytes(1 << 20), "image/jpeg")) for i in range(5)]),
        ),
        "no files": (422, "files", dict(data={"x": "1"})),
        "top_k zero": (422, "top_k", dict(files=files(images[0]), params={"top_k": 0})),
    }
    for case, (status, reason, kwargs) in cases.items():
        r = client.post("/v1/predict", **kwargs)
        assert r.status_code == status and reason in r.json()["error"], (case, r.status_code, r.text)
    b64 = {
        "bad base64": (400, "not valid base64", {"images": [{"data": "@@@"}]}),
        "no images": (422, "images", {"images": []}),
        "not JSON": (422, "", None),
    }
    for case, (status, reason, body) in b64.items():
        r = (
            client.post("/v1/predict/base64", json=body)
            if body is not None
            else client.post("/v1/predict/base64", content=b"{nope", headers={"content-type": "application/json"})
        )
        assert r.status_code == status and reason in r.json()["error"], (case, r.text)
    for path in ("/../../etc/passwd", "/v1/model/../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd"):
        r = client.get(path)
        assert r.status_code == 404 and "root:" not in r.text
    metrics = client.get("/metrics").text
    assert 'headstart_errors_total{reason="500"}' not in metrics
    assert 'headstart_errors_total{reason="422"}' in metrics and "headstart_request_latency_seconds_bucket" in metrics


def test_api_key_guards_everything_but_health(bundle, images):
    with TestClient(create_app(headstart.load(bundle), api_key="s3cret"), base_url="http://localhost") as c:
        assert c.get("/v1/health/live").status_code == 200
        assert c.get("/v1/model").status_code == 401
        assert c.post("/v1/predict", files=files(images[0]), headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/predict", files=files(images[0]), headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/v1/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_greedy_batcher_runs_queued_requests_together_and_survives_errors():
    seen = []

    def infer(batch):
        seen.append(len(batch))
        time.sleep(0.05)
        if (batch == 7).any():
            raise RuntimeError("boom")
        return batch.reshape(len(batch), -1)[:, :2].astype(np.float32)

    batcher = GreedyBatcher(infer, max_batch=64)  # one batch may take all 15 images
    crops = [np.full((n, 2, 2, 3), i, np.uint8) for i, n in enumerate([1, 2, 3, 4, 5])]
    futures = [batcher.submit(c) for c in crops]
    results = [f.result(timeout=5) for f in futures]
    assert [r[:, 0].tolist() for r in results] == [[i] * n for i, n in enumerate([1, 2, 3, 4, 5])]
    assert sum(seen) == 15 and len(seen) < 5  # queued requests ran together
    with pytest.raises(RuntimeError, match="boom"):
        batcher.submit(np.full((1, 2, 2, 3), 7, np.uint8)).result(timeout=5)
    assert batcher.submit(crops[1]).result(timeout=5).shape == (2, 2)  # the worker lives on
    batcher.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


API_KEY = {"X-API-Key": "k"}


@pytest.fixture(scope="module")
def server(bundle):
    """`headstart serve` on a real socket, with an API key; its base URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "headstart", "serve", str(bundle), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"HEADSTART_API_KEY": "k"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/v1/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in proc.stderr.read()


def test_a_host_that_is_not_this_server_is_refused_before_anything_else(server, bundle):
    """DNS rebinding: a page on evil.example that re-points its name at 127.0.0.1 sends `Host:
    evil.example`. The CLI's server answers only to the names it is bound to (plus --allow-host)."""
    rebound = httpx.get(f"{server}/v1/model", headers=API_KEY | {"host": "evil.example"})
    assert rebound.status_code == 400 and "evil.example" in rebound.json()["error"]
    assert "--allow-host" in rebound.json()["error"]
    assert httpx.get(f"{server}/v1/model", headers=API_KEY).status_code == 200  # its own name: answered
    names = names_for_bind("127.0.0.1", ["models.lan"])  # only a Host header: TestClient runs in-process
    with TestClient(create_app(headstart.load(bundle), allowed_hosts=names), base_url="http://models.lan:8000") as c:
        assert c.get("/v1/health/live").status_code == 200
        assert c.get("/v1/health/live", headers={"host": "models.lan.evil.example"}).status_code == 400
        assert c.get("/v1/health/live", headers={"host": "[::1]:8000"}).status_code == 200


def test_host_names_are_read_without_their_port():
    assert host_name("LocalHost:8000") == "localhost" and host_name("[::1]:80") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name("::1") == "::1"
    assert "localhost" in names_for_bind("0.0.0.0") and "0.0.0.0" not in names_for_bind("0.0.0.0")
    assert names_for_bind("127.0.0.1") == {"localhost", "127.0.0.1", "::1"}


def images_served(base: str) -> float:
    metrics = httpx.get(f"{base}/metrics", headers=API_KEY).text
    return float(next(line for line in metrics.splitlines() if line.startswith("headstart_images_total")).split()[-1])


def test_the_cli_serves_concurrent_clients_on_loopback(server, bundle, images):
    before = images_served(server)

    def one(path):
        with httpx.Client(base_url=server, headers=API_KEY, timeout=60) as c:
            return c.post("/v1/predict", files=files(path)).json()["predictions"][0]["label"]

    with ThreadPoolExecutor(8) as pool:
        labels = list(pool.map(one, images * 2))
    expected = [p.label for p in headstart.load(bundle).predict(images)] * 2
    assert labels == expected
    assert images_served(server) - before == 24
    metrics = httpx.get(f"{server}/metrics", headers=API_KEY).text
    sizes = [line for line in metrics.splitlines() if line.startswith("headstart_batch_size_count")]
    assert sizes and float(sizes[0].split()[-1]) < 25  # fewer runs than requests: batched (plus warm-up)


def test_tritonclient_checks_health_reads_metadata_and_infers_predicts_probabilities(server, bundle, images):
    """The Open Inference Protocol v2, with NVIDIA's stock client (binary tensors, its default, and JSON)."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    from headstart.inference.pipeline import load_crops

    def key() -> dict:  # a fresh dict each call: tritonclient adds its binary-length header to the one it is given
        return dict(API_KEY)

    client = triton.InferenceServerClient(f"127.0.0.1:{httpx.URL(server).port}")  # the loopback server
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("model", headers=key())
    meta = client.get_model_metadata("model", headers=key())
    assert [t["name"] for t in meta["inputs"]] == ["image_bytes", "images"]
    assert meta["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}

    predictor = headstart.load(bundle)
    expected = np.array([[p.probabilities[c] for c in predictor.classes] for p in predictor.predict(images)])
    encoded = triton.InferInput("image_bytes", [len(images)], "BYTES")
    encoded.set_data_from_numpy(np.array([p.read_bytes() for p in images], dtype=object))
    result = client.infer("model", [encoded], headers=key())
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)
    assert [b.decode() for b in result.as_numpy("label")] == [p.label for p in predictor.predict(images)]

    crops, _ = load_crops(images[:3], predictor.preprocessing)
    as_json = triton.InferInput("images", list(crops.shape), "UINT8")
    as_json.set_data_from_numpy(crops, binary_data=False)
    wanted = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = client.infer("model", [as_json], outputs=wanted, model_version="1", headers=key(), request_id="r1")
    assert result.get_response()["id"] == "r1" and [o["name"] for o in result.get_response()["outputs"]] == [
        "probabilities"
    ]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected[:3], atol=1e-6)

    with pytest.raises(InferenceServerException, match="API key"):
        client.infer("model", [encoded])
    with pytest.raises(InferenceServerException, match="no model 'other'"):
        client.infer("other", [encoded], headers=key())
    wrong = triton.InferInput("images", [1, 8, 8, 3], "UINT8")
    wrong.set_data_from_numpy(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(InferenceServerException, match=r"UINT8 \[N, 224, 224, 3\]"):
        client.infer("model", [wrong], headers=key())


def test_schemathesis_finds_no_failure_in_the_openapi_document(server, tmp_path):
    """Every schemathesis check (5xx, schema conformance, Allow on 405, auth, ...) on a time budget;
    tests/schemathesis.toml lists the one allowance and why."""
    config = Path(__file__).with_name("schemathesis.toml")
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run"]
    command += [f"{server}/openapi.json", "--checks", "all", "--max-examples", "10", "--max-time", "60"]
    command += ["--seed", "7", "--workers", "1", "-H", "X-API-Key: k", "--no-color"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)  # its cache there
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "16/16" in proc.stdout  # every operation, /v1 and /v2, was tested


def test_the_openapi_document_declares_refusals_auth_and_limits(bundle):
    with TestClient(
        create_app(headstart.load(bundle), api_key="s3cret", max_images=8), base_url="http://localhost"
    ) as c:
        schema = c.get("/openapi.json").json()
        r = c.request("TRACE", "/v1/predict")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        unauthorised = c.get("/v1/model")
        assert unauthorised.status_code == 401 and unauthorised.headers["www-authenticate"] == "Bearer"
    predict = schema["paths"]["/v1/predict"]["post"]
    assert {"200", "400", "401", "413", "422"} <= set(predict["responses"])
    assert {"APIKeyHeader", "HTTPBearer"} == set(schema["components"]["securitySchemes"])
    assert {"APIKeyHeader": []} in predict["security"]
    upload = schema["components"]["schemas"]["Body_predict_files_v1_predict_post"]["properties"]["files"]
    assert (upload["minItems"], upload["maxItems"]) == (1, 8)
    data = schema["components"]["schemas"]["Base64Image"]["properties"]["data"]
    assert data["minLength"] == 1 and data["contentEncoding"] == "base64"
    assert "security" not in schema["paths"]["/v1/health/live"]["get"]
