"""HTTP infrastructure around the routes: ASGI middleware (metrics, guard), the error body and its handlers,
the request/response schemas and the OpenAPI finishing touches. No resource lives here."""
