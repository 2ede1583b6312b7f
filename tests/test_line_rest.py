"""The REST API against a real uvicorn server with an HTTP client (httpx): status, last
results, history through the log's filters and paging, products, product switch, the
OpenAPI document; a token when one is set, and none off localhost is refused."""
import json
import socket
import time

import httpx
import pytest

from engine.errors import InspectError
from engine.line.runner import LineStation
from engine.model import EfficientAD, ModelConfig, save_checkpoint
from engine.outputs import OutputsConfig
from engine.outputs.rest import RestServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_station(tmp_path, **kw):
    save_checkpoint(EfficientAD(ModelConfig(image_size=64)), tmp_path / "tiny.pt",
                    {"threshold": 0.5, "model_id": "tiny"})
    (tmp_path / "settings.json").write_text(json.dumps({
        "schema_version": 0, "station": "st1", "device": "cpu", "current_product": "widget",
        "products": {"widget": {"model_file": str(tmp_path / "tiny.pt")}, "gear": {}}}))
    cfg = OutputsConfig(opcua=False, modbus=False, rest=True, rest_port=free_port(), **kw)
    return LineStation(tmp_path, "widget", cfg, source="sim:fps=20,width=96,height=64").open()


def test_rest_api_status_results_history_products_and_switch(tmp_path):
    st = make_station(tmp_path)
    st.start()
    st.rest = RestServer(st).start()
    base = st.rest.address
    try:
        deadline = time.monotonic() + 60
        while st.pipeline.parts < 4:
            assert time.monotonic() < deadline, "no parts judged"
            time.sleep(0.05)
        with httpx.Client(base_url=base, timeout=10) as c:
            s = c.get("/status").json()
            assert s["station"] == "st1" and s["product"] == "widget" and s["counters"]["parts"] >= 4
            res = c.get("/results", params={"limit": 3}).json()
            assert len(res) == 3 and [r["seq"] for r in res] == sorted(r["seq"] for r in res)
            assert all(r["part_id"].startswith("st1-") for r in res)
            time.sleep(0.6)                                  # the writer commits its batch
            page1 = c.get("/history", params={"limit": 2, "product": "widget"}).json()
            assert len(page1["rows"]) == 2 and page1["next"]
            page2 = c.get("/history", params={"limit": 2, **page1["next"]}).json()
            assert not {r["id"] for r in page1["rows"]} & {r["id"] for r in page2["rows"]}
            assert all(r["part_id"] for r in page1["rows"] + page2["rows"])
            assert c.get("/history", params={"verdict": "MAYBE"}).status_code == 422
            prods = c.get("/products").json()
            assert prods["current"] == "widget"
            assert {p["name"]: p["number"] for p in prods["products"]} == {"gear": 1, "widget": 2}
            assert c.post("/product", json={"name": "gear"}).status_code == 200
            bad = c.post("/product", json={"name": "nonsense"})
            assert bad.status_code == 409 and "not a product of this station" in bad.json()["detail"]
            assert st.outputs.counts()["product"] == 1
            assert "/history" in c.get("/openapi.json").json()["paths"]
    finally:
        st.stop()


def test_rest_token_is_required_when_set_and_off_localhost(tmp_path):
    st = make_station(tmp_path, rest_token="t0ken")
    st.rest = RestServer(st).start()
    try:
        with httpx.Client(base_url=st.rest.address, timeout=10) as c:
            assert c.get("/status").status_code == 401
            assert c.get("/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get("/status", headers={"Authorization": "Bearer t0ken"}).status_code == 200
    finally:
        st.stop()
    (tmp_path / "b").mkdir()
    st2 = make_station(tmp_path / "b", host="0.0.0.0")
    try:
        with pytest.raises(InspectError, match="off localhost .* needs a token"):
            RestServer(st2).start()
    finally:
        st2.stop()
