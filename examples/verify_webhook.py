"""Receive diplowatch webhooks safely: verify the signature, then drop repeats by delivery id.

Standard library only; copy it into your receiver. diplowatch signs the exact body bytes:

    X-Diplowatch-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the shared secret>
    X-Diplowatch-Delivery:  <digest id>   (the same on every re-send: an idempotency key)

Verify against the raw bytes you received, before parsing JSON (re-serialising changes them).
Run it as a tiny receiver for trying things out:

    DW_HOOK_SECRET=... python examples/verify_webhook.py --port 8080
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def signature(secret: bytes, body: bytes) -> str:
    """The header value diplowatch sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes | str, body: bytes, header: str | None) -> bool:
    """True when `header` is the valid signature of `body` (constant-time comparison)."""
    if not header or not header.startswith("sha256="):
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.compare_digest(signature(key, body), header.strip())


class Deliveries:
    """Remembers the delivery ids already handled (keep them in your database in production)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def first_time(self, delivery_id: str) -> bool:
        if delivery_id in self.seen:
            return False
        self.seen.add(delivery_id)
        return True


def make_handler(secret: bytes, deliveries: Deliveries) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not verify(secret, body, self.headers.get("X-Diplowatch-Signature")):
                self.send_response(401)
            elif deliveries.first_time(self.headers.get("X-Diplowatch-Delivery", "")):
                payload = json.loads(body)
                print(f"{payload['type']} {payload['id']}: {payload['subject']}", flush=True)
                self.send_response(204)
            else:
                self.send_response(200)  # a repeat after a crash or a lost answer: already handled
            self.end_headers()

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--secret-env", default="DW_HOOK_SECRET")
    args = parser.parse_args()
    secret = os.environ.get(args.secret_env)
    if not secret:
        sys.exit(f"set {args.secret_env} to the shared secret")
    HTTPServer(("127.0.0.1", args.port), make_handler(secret.encode(), Deliveries())).serve_forever()


if __name__ == "__main__":
    main()
