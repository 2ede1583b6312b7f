"""REST API for MES systems (FastAPI, served by uvicorn on a thread of its own).

    GET  /status             state, product, counters, each output and its address, problems
    GET  /results?limit=N    the last results the line gave (newest last)
    GET  /history            the inspection log's rows through its own filters and paging:
                             verdict, product, station, start, end (epoch s), score_min,
                             score_max, limit, after_t_us + after_id (the next page)
    GET  /products           the station's products, their numbers, the current one
    POST /product            {"name": "..."} switch product (as the PLC would)
    GET  /openapi.json, /docs  the OpenAPI document

On localhost by default. Bound anywhere else it requires a token (header
`Authorization: Bearer TOKEN`) and does not start without one; a token set on localhost is
required too.
"""
# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time

import dataclasses
import hmac
import logging
import threading
import time

from engine.errors import InspectError
from engine.outputs.netcheck import check_bind

log = logging.getLogger("inspect.rest")


def _result(r) -> dict:
    d = dataclasses.asdict(r)
    d.pop("t_handed", None)
    if d["score"] == float("inf"):
        d["score"] = None                         # JSON has no infinity: "no score"
    return d


def _row(r) -> dict:
    return {"id": r.id, "t_us": r.t_us, "station": r.station, "camera": r.camera,
            "product": r.product, "model_id": r.model_id, "part_id": getattr(r, "part_id", None),
            "score": r.score if r.score != float("inf") else None, "threshold": r.threshold,
            "verdict": r.verdict.value, "reason": r.reason,
            "label": r.label.value if r.label else None}


def build_app(station, token: str = ""):
    """station: what the runner (engine/line/runner.LineStation) offers: outputs, lg,
    product, settings, switch_product. The app only reads it and asks for switches."""
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from pydantic import BaseModel

    def auth(request: Request) -> None:
        if not token:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "a valid token is required (Authorization: Bearer TOKEN)")

    app = FastAPI(title="Inspection station", version="1", dependencies=[Depends(auth)],
                  description="Status, results, history and product of one inspection station.")

    class ProductChoice(BaseModel):
        name: str

    @app.get("/status")
    def status() -> dict:
        o, p = station.outputs, station.pipeline
        return {"station": station.settings.station, "product": station.product,
                "state": dataclasses.asdict(o.state),
                "counters": {"parts": p.parts, "fails": p.fails, "reviews": p.reviews},
                "outputs": [{"name": v.name, "address": v.address, "running": v.running,
                             "error": v.error} for v in o.views()],
                "problems": o.counts()}

    @app.get("/results")
    def results(limit: int = Query(20, ge=1, le=200)) -> list[dict]:
        return [_result(r) for r in list(station.outputs.recent)[-limit:]]

    @app.get("/history")
    def history(verdict: list[str] = Query(default=[]), product: list[str] = Query(default=[]),
                station_name: list[str] = Query(default=[], alias="station"),
                start: float | None = None, end: float | None = None,
                score_min: float | None = None, score_max: float | None = None,
                limit: int = Query(50, ge=1, le=1000), after_t_us: int | None = None,
                after_id: int | None = None) -> dict:
        from engine.log.queries import InspectionFilter, PageCursor
        if station.lg is None:
            raise HTTPException(503, "the inspection log is not open yet")
        bad = [v for v in verdict if v not in ("PASS", "FAIL", "REVIEW")]
        if bad:
            raise HTTPException(422, f"verdict must be PASS, FAIL or REVIEW, not {bad[0]!r}")
        flt = InspectionFilter(start=start, end=end, verdicts=tuple(verdict),
                               products=tuple(product), stations=tuple(station_name),
                               score_min=score_min, score_max=score_max)
        after = PageCursor(after_t_us, after_id) if after_t_us is not None and after_id is not None else None
        page = station.lg.page(flt, after=after, limit=limit)
        nxt = page.next
        return {"rows": [_row(r) for r in page.rows],
                "next": {"after_t_us": nxt.key, "after_id": nxt.id} if nxt else None}

    @app.get("/products")
    def products() -> dict:
        numbers = station.outputs.config.product_numbers
        return {"current": station.product,
                "products": [{"name": n, "number": numbers.index(n) + 1 if n in numbers else None,
                              "has_model": bool(station.settings.products[n].model_file)}
                             for n in sorted(station.settings.products)]}

    @app.post("/product")
    def switch(choice: ProductChoice) -> dict:
        o = station.outputs

        async def ask():
            return o.request_product(choice.name, None, "REST")
        why = o.loop.submit(ask()).result(10)
        if why:
            raise HTTPException(409, why)
        return {"product": choice.name}

    return app


class ServicesView:
    """The GUI's Services as the REST API sees a station (the same names as the runner's
    LineStation), read live so that a product switched in the GUI shows at once."""

    def __init__(self, services, outputs):
        self.services, self.outputs, self.config = services, outputs, outputs.config

    pipeline = property(lambda self: self.services.pipeline)
    settings = property(lambda self: self.services.settings)
    product = property(lambda self: self.services.settings.current_product)
    lg = property(lambda self: self.services.log)


class RestServer:
    """uvicorn on its own thread; start() returns once it listens (or raises one sentence)."""

    def __init__(self, station):
        self.station = station
        cfg = station.config
        self.host, self.port, self.token = cfg.host, cfg.rest_port, cfg.rest_token
        self.server = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "RestServer":
        import uvicorn
        from engine.outputs.values import is_local
        if not is_local(self.host) and not self.token:
            raise InspectError(f"The REST API off localhost ({self.host}) needs a token: set one "
                               "(--rest-token, Settings > Line) or bind it to 127.0.0.1.")
        check_bind(self.host, self.port, "REST API")
        config = uvicorn.Config(build_app(self.station, self.token), host=self.host, port=self.port,
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="rest api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise InspectError(f"The REST API could not start on {self.address}.")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
