"""The orchestrator's HTTP face when it runs as a service (``speedrun serve``).

/metrics: the metrics registry in the Prometheus text format; the store-wide
gauges are refreshed from the store on each scrape, so they are never stale.
/healthz: liveness.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from orchestrator import metrics
from orchestrator.store.base import Store


def create_app(store: Store) -> FastAPI:
    prom = metrics.require_client()
    app = FastAPI(title="speedrun orchestrator", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    async def scrape() -> Response:
        await metrics.refresh_from_store(store)
        return Response(metrics.exposition(), media_type=prom.CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
