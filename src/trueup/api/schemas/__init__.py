"""Wire schemas for the OpenAPI document.

Requests are decoded strictly by hand (``trueup.core``) so that every error names its field
the same way; these pydantic models describe the same shapes for ``/openapi.json`` and for
clients. Responses are built as plain dicts and documented here, one module per group of
routes:

- :mod:`.common` — the error envelope, the health probes, the account-id pattern;
- :mod:`.writes` — writes and PacSpace's emit routes: bodies, acceptance, status;
- :mod:`.balances` — derive, compare, period checkpoints, customers and usage;
- :mod:`.log` — the log's key, inclusion and consistency proofs, bundles, verification;
- :mod:`.webhooks` — webhook endpoints, deliveries and events.
"""
