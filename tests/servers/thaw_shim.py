#!/usr/bin/python3
"""
A protocol shim in front of Ceph RGW for archive restores (tests only).

RGW 16 has no thaw: it answers RestoreObject with 400 (taken as a browser
POST upload), never sends x-amz-restore, and serves GETs of GLACIER and
DEEP_ARCHIVE objects at once (docs: ../../../shared/recipes/s3-rgw-behaviour.md
section 4). This shim implements exactly those three parts of S3 for objects
whose storage class (as RGW reports it) is GLACIER or DEEP_ARCHIVE:

  POST /bucket/key?restore   RestoreObject: 202, a thaw that completes after
                             --delay seconds (409 RestoreAlreadyInProgress while
                             one runs, 200 once a thawed copy exists)
  HEAD                       RGW's answer plus x-amz-restore (ongoing-request
                             "true" while thawing, "false" with an expiry-date)
  GET                        403 InvalidObjectState until the thaw completed

Every other request, and every request for other objects, goes to RGW
untouched (the same method, path, query, headers, including the client's
Host and SigV4 signature, and body; only hop-by-hop headers and Expect, which
belong to one connection, are not repeated), and RGW's answer comes back
with the same status, headers and body (a body RGW sent chunked is sent with
its Content-Length).

Usage: thaw_shim.py --upstream https://127.0.0.1:PORT --ca CA.pem
       --port-file FILE [--delay SECONDS] [--log FILE]
It listens on 127.0.0.1 (plain HTTP, which custodian accepts for loopback
only), writes its port to --port-file, and logs one JSON line per request
it handled itself to --log.
"""
import argparse
import email.utils
import http.client
import http.server
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse

ARCHIVE = ("GLACIER", "DEEP_ARCHIVE")
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-connection"}


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.thaws = {}  # path -> {"ready_at": t, "tier": s}
        self.ctx = ssl.create_default_context(cafile=args.ca)
        u = urllib.parse.urlsplit(args.upstream)
        self.host, self.port = u.hostname, u.port or 443

    def log(self, **kw):
        if self.args.log:
            with self.lock, open(self.args.log, "a") as f:
                f.write(json.dumps(kw) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, fmt, *args):
        pass

    def upstream(self, method, body):
        conn = http.client.HTTPSConnection(self.state.host, self.state.port,
                                           context=self.state.ctx, timeout=120)
        conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in HOP and k.lower() != "expect":
                conn.putheader(k, v)
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read() if method != "HEAD" else b""
        conn.close()
        return resp, data

    def reply(self, status, headers, body, head=False):
        self.send_response_only(status)
        for k, v in headers:
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        if head:
            length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
            self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def error(self, status, code, message):
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>{message}</Message><Resource>{self.path}</Resource></Error>").encode()
        self.reply(status, [("Content-Type", "application/xml")], body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def split(self):
        path, _, query = self.path.partition("?")
        keys = {k for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
        return path, keys

    def thaw_state(self, path):
        with self.state.lock:
            t = self.state.thaws.get(path)
        if t is None:
            return None
        return "ready" if time.time() >= t["ready_at"] else "ongoing"

    def do_POST(self):
        path, keys = self.split()
        body = self.body()
        if "restore" not in keys:
            return self.reply(*self.passthrough("POST", body))
        tier = "Standard"
        if b"<Tier>" in body:
            tier = body.split(b"<Tier>")[1].split(b"</Tier>")[0].decode()
        st = self.thaw_state(path)
        self.state.log(op="RestoreObject", path=path, tier=tier, state=st)
        if st == "ongoing":
            return self.error(409, "RestoreAlreadyInProgress", "Object restore is in progress")
        if st == "ready":
            return self.reply(200, [], b"")
        with self.state.lock:
            self.state.thaws[path] = {"ready_at": time.time() + self.state.args.delay,
                                      "tier": tier}
        self.reply(202, [], b"")

    def passthrough(self, method, body):
        resp, data = self.upstream(method, body)
        return resp.status, resp.getheaders(), data

    def archived(self, headers):
        return dict((k.lower(), v) for k, v in headers).get("x-amz-storage-class") in ARCHIVE

    def do_HEAD(self):
        path, keys = self.split()
        status, headers, _ = self.passthrough("HEAD", b"")
        if status == 200 and not keys - {"versionId"} and self.archived(headers):
            st = self.thaw_state(path)
            if st == "ongoing":
                headers.append(("x-amz-restore", 'ongoing-request="true"'))
            elif st == "ready":
                expiry = email.utils.formatdate(time.time() + 7 * 86400, usegmt=True)
                headers.append(("x-amz-restore",
                                f'ongoing-request="false", expiry-date="{expiry}"'))
            self.state.log(op="HEAD", path=path, state=st)
        self.reply(status, headers, b"", head=True)

    def do_GET(self):
        path, keys = self.split()
        status, headers, data = self.passthrough("GET", b"")
        if status in (200, 206) and not keys - {"versionId", "partNumber"} and \
                self.archived(headers) and self.thaw_state(path) != "ready":
            self.state.log(op="GET", path=path, refused="InvalidObjectState")
            return self.error(403, "InvalidObjectState",
                              "The operation is not valid for the object's storage class")
        self.reply(status, headers, data)

    def do_PUT(self):
        self.reply(*self.passthrough("PUT", self.body()))

    def do_DELETE(self):
        self.reply(*self.passthrough("DELETE", self.body()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--delay", type=float, default=3.0)
    ap.add_argument("--log")
    args = ap.parse_args()
    Handler.state = State(args)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
