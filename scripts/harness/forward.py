"""A TCP port forwarded to a unix socket, run inside a network namespace: the fleet tests' central
namespace offers the machine's PostgreSQL (listening on its unix socket, which every namespace can
reach through the file system) to the agents' namespaces over the bridge, as TCP, as a real central
server would.

    python -m scripts.harness.forward ADDRESS PORT UNIX_SOCKET
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def serve(address: str, port: int, target: str) -> None:
    listener = socket.create_server((address, port), reuse_port=True)
    print(f"forwarding {address}:{port} to {target}", flush=True)
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(target)
        except OSError:
            client.close()
            continue
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(source, sink), daemon=True).start()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
