"""The page's HTTP server: uvicorn in a thread beside the node's DICOM listener and processing loop."""

from __future__ import annotations

import threading
import time

import uvicorn

from ...errors import InvalidInput
from ..node import Node
from .app import WebConfig, create_app, is_loopback


class WebServer:
    def __init__(self, node: Node, config: WebConfig, certfile: str | None = None, keyfile: str | None = None) -> None:
        if not is_loopback(config.host) and (config.credentials is None or not config.credentials.users):
            raise InvalidInput(f"--web-host {config.host}: the page would be reachable beyond this machine; give it "
                               "users (--web-users FILE, written by collat-client web-user NAME --users FILE)")
        self.config = config
        self._server = uvicorn.Server(uvicorn.Config(
            create_app(node, config), host=config.host, port=config.port, log_level="warning", access_log=False,
            server_header=False, ssl_certfile=certfile, ssl_keyfile=keyfile, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, name="collat-web", daemon=True)

    def start(self, timeout: float = 30.0) -> WebServer:
        self._thread.start()
        deadline = time.time() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.time() > deadline:
                raise InvalidInput(f"the node's page could not listen on {self.config.host}:{self.config.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
