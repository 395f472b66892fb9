#!/usr/bin/env python3
"""A fake Kubernetes API server for config-manager tests: one node, plain http on 127.0.0.1.

Serves what config-manager uses:
  GET /api/v1/nodes?fieldSelector=metadata.name%3D<node>            a NodeList with the node
  GET /api/v1/nodes?fieldSelector=...&watch=true&resourceVersion=N   a chunked stream of watch
      events newer than N, one JSON object per line, until timeoutSeconds or a drop
and control endpoints the test calls:
  GET /control/label?value=V   set the node's label (a MODIFIED event); without value: remove it
  GET /control/drop            cut every open watch stream (the connection is closed mid-stream)
  GET /control/expire          the next watch answers an ERROR event with code 410, then ends;
                               open watches are cut too
  GET /control/stats           {"lists": n, "watches": n}
The chosen port is written to --port-file (atomically) once the server listens.
"""
import argparse
import json
import os
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self, node, key, label):
        self.cond = threading.Condition()
        self.node = node
        self.key = key
        self.labels = {"kubernetes.io/hostname": node}
        if label:
            self.labels[key] = label
        self.rv = 1000
        self.events = []  # (rv, type, object)
        self.generation = 0  # bumped to cut open watches
        self.expire_next = False
        self.lists = 0
        self.watches = 0

    def node_object(self):
        return {"kind": "Node", "apiVersion": "v1",
                "metadata": {"name": self.node, "resourceVersion": str(self.rv),
                             "labels": dict(self.labels)}}

    def set_label(self, value):
        with self.cond:
            if value is None:
                self.labels.pop(self.key, None)
            else:
                self.labels[self.key] = value
            self.rv += 1
            self.events.append((self.rv, "MODIFIED", self.node_object()))
            self.cond.notify_all()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, fmt, *args):  # quiet
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        s = self.state
        if url.path == "/control/label":
            s.set_label(query["value"][0] if "value" in query else None)
            return self.send_json(200, {"ok": True})
        if url.path == "/control/drop" or url.path == "/control/expire":
            with s.cond:
                s.expire_next = s.expire_next or url.path == "/control/expire"
                s.generation += 1
                s.cond.notify_all()
            return self.send_json(200, {"ok": True})
        if url.path == "/control/stats":
            with s.cond:
                return self.send_json(200, {"lists": s.lists, "watches": s.watches})
        if url.path != "/api/v1/nodes":
            return self.send_json(404, {"kind": "Status", "code": 404})
        if query.get("fieldSelector") != ["metadata.name=" + s.node]:
            return self.send_json(400, {"kind": "Status", "code": 400,
                                        "message": "want fieldSelector=metadata.name=" + s.node})
        if query.get("watch") != ["true"]:
            with s.cond:
                s.lists += 1
                body = {"kind": "NodeList", "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(s.rv)},
                        "items": [s.node_object()]}
            return self.send_json(200, body)
        self.watch(int(query.get("resourceVersion", ["0"])[0]),
                   float(query.get("timeoutSeconds", ["300"])[0]))

    def watch(self, since, timeout):
        s = self.state
        with s.cond:
            s.watches += 1
            generation = s.generation
            expire = s.expire_next
            s.expire_next = False
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if expire:
            self.chunk(json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "status": "Failure", "reason": "Expired", "code": 410,
                "message": "too old resource version: %d" % since}}) + "\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while True:
                with s.cond:
                    s.cond.wait_for(lambda: deadline.is_set() or s.generation != generation or
                                    any(rv > since for rv, _, _ in s.events), timeout=0.5)
                    if s.generation != generation:
                        # Cut the stream: close the connection without the final chunk.
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    pending = [(rv, t, o) for rv, t, o in s.events if rv > since]
                for rv, kind, obj in pending:
                    self.chunk(json.dumps({"type": kind, "object": obj}) + "\n")
                    since = rv
                if deadline.is_set():
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            timer.cancel()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--label-key", default="nvidia.com/device-plugin.config")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    Handler.state = State(args.node, args.label_key, args.label)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
