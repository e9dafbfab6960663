"""
A local stand-in for the Linode API v4, just ``GET /v4/linode/instances``: bearer-token
auth, the ``X-Filter`` header for tags, and pagination (2 per page, so every listing
spans several pages). Records each request so tests can see what the SDK asked.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PAGE_SIZE = 2


def instance(id_, label, status="running", tags=("jupyter",), ipv4=("203.0.113.10",)):
    """An instance as the API returns it (the fields the SDK reads, and a few more)."""
    return {
        "id": id_,
        "label": label,
        "status": status,
        "tags": list(tags),
        "ipv4": list(ipv4),
        "ipv6": "2600:3c00::f03c:91ff:fe00:1/128",
        "region": "us-east",
        "type": "g6-standard-1",
        "image": "linode/debian12",
        "group": "",
        "created": "2026-01-01T00:00:00",
        "updated": "2026-01-01T00:00:00",
        "hypervisor": "kvm",
        "watchdog_enabled": True,
    }


class LinodeApi:
    def __init__(self, instances, token="good-token", honour_filter=True):
        self.instances, self.token, self.honour_filter = instances, token, honour_filter
        self.requests: list[dict] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                api.requests.append(
                    {
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "filter": self.headers.get("X-Filter"),
                        "auth": self.headers.get("Authorization"),
                    }
                )
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self.answer(401, {"errors": [{"reason": "Invalid Token"}]})
                if url.path != "/v4/linode/instances":
                    return self.answer(404, {"errors": [{"reason": "Not found"}]})
                found = api.instances
                wanted = json.loads(self.headers.get("X-Filter") or "{}").get("tags")
                if api.honour_filter and wanted:
                    found = [i for i in found if wanted in i["tags"]]
                page = int(parse_qs(url.query).get("page", ["1"])[0])
                pages = max(1, -(-len(found) // PAGE_SIZE))
                data = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
                self.answer(200, {"data": data, "page": page, "pages": pages, "results": len(found)})

            def answer(self, status, body):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v4"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
