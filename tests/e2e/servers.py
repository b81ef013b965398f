"""
Real servers for custodian's end-to-end tests, as session-scoped pytest
fixtures (each started once per test session, stopped at its end, also when
tests fail):

  rgw   a throw-away Ceph RADOS Gateway (S3 over HTTPS with a test CA, SigV4
        checked, Object Lock, versioning, storage classes STANDARD,
        STANDARD_IA, GLACIER, DEEP_ARCHIVE), from tests/servers/rgw.sh
  sshd  Debian's OpenSSH server with internal-sftp on 127.0.0.1, key-only
        root login, from tests/servers/sshd.sh

and MongoServer / mongo_server(): the MongoDB wire-protocol server
tests/servers/mongo_server.py (a generated billing data set, --dump-expected
for comparison, --unknown-log of every command it did not know; --billing
adds a billing app's periods, invoices and timesheets), started
by whichever test module needs it, with the scope it chooses.

conftest.py registers them with `from servers import rgw, sshd`. The servers
are shared by every test in the session: use fresh names
(rgw.new_bucket(), sshd.new_dir()) rather than fixed ones.

S3 requests go through curl's --aws-sigv4 (the same libcurl custodian uses);
see Rgw.request for the traps it takes care of.
"""
import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest

SERVERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "servers")
RGW_SH = os.path.normpath(os.path.join(SERVERS, "rgw.sh"))
SSHD_SH = os.path.normpath(os.path.join(SERVERS, "sshd.sh"))
MONGO_SERVER = os.path.normpath(os.path.join(SERVERS, "mongo_server.py"))
# Debian's interpreter: python3-mockupdb, python3-mongomock, python3-bson
MONGO_PYTHON = "/usr/bin/python3"
S3NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_names = itertools.count(1)


class CurlError(Exception):
    """curl could not get an HTTP answer: exit_code 7 connection refused,
    28 timeout, 60 certificate (or SSH host key) not accepted, ..."""

    def __init__(self, exit_code, stderr, cmd):
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(f"curl exited {exit_code}: {stderr.strip()[-500:]}")


def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1, below the ephemeral range
    (32768+, where outgoing connections could take them) and away from the
    ports Ceph's OSD picks (6800-7300)."""
    ports = []
    while len(ports) < n:
        p = random.randrange(20000, 32000)
        if p not in ports and _port_free(p):
            ports.append(p)
    return ports


def _run_script(cmd, timeout, what, env=None):
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           env=env)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{what}: no answer after {timeout}s\n"
                             f"{(e.stderr or b'').decode(errors='replace')[-4000:]}")
    if p.returncode != 0:
        raise AssertionError(f"{what} failed ({p.returncode}):\n"
                             f"{p.stderr.decode(errors='replace')[-6000:]}\n"
                             "(are the test packages installed? scripts/install-deps.sh test)")
    return p.stdout.decode()


def _write_secret(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def normalize_query(query):
    """The query as RGW canonicalises it, which is what curl must sign:
    every key with '=' and keys in sorted order (values as given, so encode
    '/' as %2F yourself)."""
    if not query:
        return ""
    parts = [q if "=" in q else q + "=" for q in query.split("&") if q]
    return "&".join(sorted(parts, key=lambda q: q.split("=", 1)))


class Rgw:
    region = "us-east-1"
    access_key = "AKTEST"
    secret_key = "SKTEST"
    # a second user, for "someone else's bucket" checks
    other_access_key = "AKOTHER"
    other_secret_key = "SKOTHER"
    storage_classes = ("STANDARD", "STANDARD_IA", "GLACIER", "DEEP_ARCHIVE")

    def __init__(self, dir, https_port, mon_port, http_port, extra_conf=""):
        self.dir = dir
        self.extra_conf = extra_conf
        self.https_port = https_port
        self.mon_port = mon_port
        self.endpoint = f"https://127.0.0.1:{https_port}"
        # plain HTTP on the same gateway, for debugging only
        self.http_endpoint = f"http://127.0.0.1:{http_port}"
        self.ca_file = os.path.join(dir, "ca.pem")
        self.conf = os.path.join(dir, "ceph.conf")
        self.access_key_file = os.path.join(dir, "access_key")
        self.secret_key_file = os.path.join(dir, "secret_key")
        self.started = False

    # --- life cycle ---
    def start(self):
        _run_script([RGW_SH, "start", self.dir, str(self.https_port), str(self.mon_port),
                     self.http_endpoint.rsplit(":", 1)[1]], 150, "rgw.sh start",
                    env=dict(os.environ, RGW_EXTRA_CONF=self.extra_conf))
        self.started = True
        _write_secret(self.access_key_file, self.access_key)
        _write_secret(self.secret_key_file, self.secret_key)

    def stop(self):
        _run_script([RGW_SH, "stop", self.dir], 60, "rgw.sh stop")
        self.started = False

    def stop_gateway(self):
        """Stop only radosgw (connections refused); the cluster keeps the data."""
        _run_script([RGW_SH, "stop-gateway", self.dir], 30, "rgw.sh stop-gateway")
        self.gateway_down = True

    def start_gateway(self):
        """Start radosgw again; returns when it answers over HTTPS."""
        _run_script([RGW_SH, "start-gateway", self.dir], 120, "rgw.sh start-gateway")
        self.gateway_down = False

    def admin(self, *args, timeout=60):
        """radosgw-admin on this cluster (e.g. "lc", "process"); returns stdout."""
        p = subprocess.run(["radosgw-admin", "-c", self.conf] + list(args), capture_output=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, f"radosgw-admin {args}: {p.stderr.decode()[-2000:]}"
        return p.stdout.decode()

    def write_credentials(self, dir, access_key=None, secret_key=None):
        """Credential files (0600, one line each) in dir, e.g. with a wrong
        secret; returns (access_key_file, secret_key_file)."""
        os.makedirs(dir, exist_ok=True)
        return (_write_secret(os.path.join(dir, "access_key"), access_key or self.access_key),
                _write_secret(os.path.join(dir, "secret_key"), secret_key or self.secret_key))

    # --- S3 requests ---
    def request(self, method, path, data=None, headers=None, anonymous=False, sign_key=None,
                access_key=None, ca_file="default", data_file=None, timeout=60):
        """One S3 request with curl; returns (status, headers, body bytes).

        path: "/bucket/key?query" (key already percent-encoded, see quote());
        the query is normalised (bare keys get '=', keys sorted) so curl signs
        what RGW checks. data: bytes for the body (data_file: a file's path).
        headers: dict. anonymous: unsigned. sign_key / access_key: sign with
        another secret / access key. ca_file: None trusts only the system CAs.
        Headers come back with lower-case names. Raises CurlError when there
        is no HTTP answer (refused, TLS failure, timeout).
        """
        path, _, query = path.partition("?")
        query = normalize_query(query)
        url = self.endpoint + path + ("?" + query if query else "")
        headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
        tmp = tempfile.mkdtemp(prefix="s3req-")
        try:
            hdr_file = os.path.join(tmp, "headers")
            body_file = os.path.join(tmp, "body")
            cmd = ["curl", "-sS", "--max-time", str(timeout), "--connect-timeout", "10",
                   "-D", hdr_file, "-o", body_file, "-w", "%{http_code}"]
            if ca_file == "default":
                ca_file = self.ca_file
            if ca_file:
                cmd += ["--cacert", ca_file]
            if not anonymous:
                cmd += ["--aws-sigv4", f"aws:amz:{self.region}:s3",
                        "--user", f"{access_key or self.access_key}:{sign_key or self.secret_key}"]
                headers.setdefault("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            if method == "HEAD":
                cmd += ["-I"]
            else:
                cmd += ["-X", method]
            if data is not None and data_file is None:
                data_file = os.path.join(tmp, "data")
                with open(data_file, "wb") as f:
                    f.write(data)
            if data_file is not None:
                cmd += ["--data-binary", "@" + data_file]
                # not curl's default application/x-www-form-urlencoded (and
                # not an empty "Content-Type:", which curl 7.88 signs but
                # does not send: SignatureDoesNotMatch)
                headers.setdefault("content-type", "application/octet-stream")
            elif method in ("PUT", "POST"):
                headers.setdefault("content-length", "0")  # else 411
            for k, v in headers.items():
                cmd += ["-H", f"{k}: {v}" if v != "" else f"{k}:"]
            cmd.append(url)
            p = subprocess.run(cmd, capture_output=True, timeout=timeout + 15,
                               stdin=subprocess.DEVNULL)
            if p.returncode != 0:
                raise CurlError(p.returncode, p.stderr.decode(errors="replace"), cmd)
            status = int(p.stdout.decode().strip() or 0)
            resp_headers = {}
            raw = open(hdr_file, "rb").read().decode("latin-1")
            # the last block (after any "100 Continue")
            blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
            for line in (blocks[-1].split("\n")[1:] if blocks else []):
                if ":" in line:
                    k, v = line.split(":", 1)
                    resp_headers[k.strip().lower()] = v.strip()
            body = open(body_file, "rb").read() if os.path.exists(body_file) else b""
            return status, resp_headers, body
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def quote(key):
        """An object key as it goes in a request path."""
        return urllib.parse.quote(key, safe="/~")

    def ok(self, method, path, expect=(200,), **kw):
        status, headers, body = self.request(method, path, **kw)
        expect = (expect,) if isinstance(expect, int) else expect
        assert status in expect, f"{method} {path}: {status}, expected {expect}\n{body[:2000]!r}"
        return status, headers, body

    def create_bucket(self, name, object_lock=False, versioning=False):
        h = {"x-amz-bucket-object-lock-enabled": "true"} if object_lock else {}
        self.ok("PUT", f"/{name}", headers=h)
        if versioning and not object_lock:
            self.ok("PUT", f"/{name}?versioning", data=b"<VersioningConfiguration><Status>Enabled"
                    b"</Status></VersioningConfiguration>")
        return name

    def new_bucket(self, prefix="t", object_lock=False, versioning=False):
        """A bucket with a name no other test in the session uses."""
        name = f"{prefix}-{os.getpid()}-{next(_names)}-{random.randrange(1 << 20):05x}"
        return self.create_bucket(name, object_lock=object_lock, versioning=versioning)

    def put(self, bucket, key, data, headers=None):
        """PUT an object; returns the response headers."""
        return self.ok("PUT", f"/{bucket}/{self.quote(key)}", data=data, headers=headers)[1]

    def get(self, bucket, key, version_id=None):
        q = f"?versionId={version_id}" if version_id else ""
        return self.ok("GET", f"/{bucket}/{self.quote(key)}{q}")[2]

    def head(self, bucket, key, version_id=None, expect=200):
        """HEAD an object; asserts the status (unless expect is None) and
        returns the headers, lower-case names, with ':status' added."""
        q = f"?versionId={version_id}" if version_id else ""
        status, headers, _ = self.request("HEAD", f"/{bucket}/{self.quote(key)}{q}")
        if expect is not None:
            assert status == expect, f"HEAD {bucket}/{key}: {status}, expected {expect}"
        headers[":status"] = str(status)
        return headers

    def list_objects(self, bucket, prefix=""):
        """Every object (latest versions) under prefix:
        [{key, size, etag, storage_class, last_modified}]."""
        out, token = [], None
        while True:
            q = "list-type=2"
            if prefix:
                q += "&prefix=" + urllib.parse.quote(prefix, safe="")
            if token:
                q += "&continuation-token=" + urllib.parse.quote(token, safe="")
            root = ET.fromstring(self.ok("GET", f"/{bucket}?{q}")[2])
            for c in root.findall(S3NS + "Contents"):
                out.append({"key": c.findtext(S3NS + "Key"),
                            "size": int(c.findtext(S3NS + "Size")),
                            "etag": (c.findtext(S3NS + "ETag") or "").strip('"'),
                            "storage_class": c.findtext(S3NS + "StorageClass"),
                            "last_modified": c.findtext(S3NS + "LastModified")})
            if root.findtext(S3NS + "IsTruncated") != "true":
                return out
            token = root.findtext(S3NS + "NextContinuationToken")

    def list_versions(self, bucket, prefix=""):
        """Every version and delete marker under prefix:
        [{key, version_id, is_latest, delete_marker, size, storage_class}]."""
        out, km, vm = [], None, None
        while True:
            q = "versions"
            if prefix:
                q += "&prefix=" + urllib.parse.quote(prefix, safe="")
            if km:
                q += "&key-marker=" + urllib.parse.quote(km, safe="")
                q += "&version-id-marker=" + urllib.parse.quote(vm or "", safe="")
            root = ET.fromstring(self.ok("GET", f"/{bucket}?{q}")[2])
            for c in root:
                tag = c.tag.replace(S3NS, "")
                if tag not in ("Version", "DeleteMarker"):
                    continue
                out.append({"key": c.findtext(S3NS + "Key"),
                            "version_id": c.findtext(S3NS + "VersionId"),
                            "is_latest": c.findtext(S3NS + "IsLatest") == "true",
                            "delete_marker": tag == "DeleteMarker",
                            "size": int(c.findtext(S3NS + "Size") or 0),
                            "storage_class": c.findtext(S3NS + "StorageClass")})
            if root.findtext(S3NS + "IsTruncated") != "true":
                return out
            km = root.findtext(S3NS + "NextKeyMarker")
            vm = root.findtext(S3NS + "NextVersionIdMarker")


class Sshd:
    user = "root"

    def __init__(self, dir, port):
        self.dir = dir
        self.port = port
        self.root = os.path.join(dir, "sftp-root")
        self.url_base = f"sftp://{self.user}@127.0.0.1:{port}{self.root}"
        self.identity = os.path.join(dir, "client_key")
        self.identity_pub = self.identity + ".pub"
        self.known_hosts = os.path.join(dir, "known_hosts")
        self.wrong_known_hosts = os.path.join(dir, "wrong_known_hosts")
        self.log = os.path.join(dir, "sshd.log")
        self.host_key_sha256 = None  # base64, as CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256 wants
        self.host_key_md5 = None  # 32 hex digits, CURLOPT_SSH_HOST_PUBLIC_KEY_MD5
        self.running = False

    def start(self):
        args = [SSHD_SH, "start", self.dir]
        if not os.path.exists(os.path.join(self.dir, "sshd_config")):
            args.append(str(self.port))
        _run_script(args, 60, "sshd.sh start")
        self.running = True
        if self.host_key_sha256 is None:
            import base64
            blob = base64.b64decode(open(os.path.join(
                self.dir, "ssh_host_ed25519_key.pub")).read().split()[1])
            self.host_key_sha256 = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
            self.host_key_md5 = hashlib.md5(blob).hexdigest()

    def stop(self):
        """Stop the daemon and drop its open sessions (an outage)."""
        _run_script([SSHD_SH, "stop", self.dir], 30, "sshd.sh stop")
        self.running = False

    def new_dir(self, prefix="t"):
        """A fresh folder under the SFTP root: (local path, sftp URL)."""
        name = f"{prefix}-{os.getpid()}-{next(_names)}"
        path = os.path.join(self.root, name)
        os.makedirs(path)
        return path, f"{self.url_base}/{name}"

    def curl(self, *args, known_hosts="default", timeout=60):
        """curl with the client key, checking the host key against known_hosts
        (the curl tool reads only $HOME/.ssh/known_hosts, so a private HOME is
        made for it). Returns the CompletedProcess (bytes)."""
        if known_hosts == "default":
            known_hosts = self.known_hosts
        home = os.path.join(self.dir, "home-" + hashlib.sha1(
            str(known_hosts).encode()).hexdigest()[:10])
        os.makedirs(os.path.join(home, ".ssh"), exist_ok=True)
        kh = os.path.join(home, ".ssh", "known_hosts")
        if known_hosts:
            shutil.copyfile(known_hosts, kh)
        elif os.path.exists(kh):
            os.unlink(kh)
        env = dict(os.environ, HOME=home, CURL_HOME=home)
        env.pop("XDG_CONFIG_HOME", None)
        cmd = ["curl", "-sS", "--max-time", str(timeout), "--key", self.identity,
               "--pubkey", self.identity_pub] + list(args)
        return subprocess.run(cmd, capture_output=True, env=env, timeout=timeout + 15,
                              stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def rgw_server(dir, extra_conf=""):
    """A gateway of one's own (e.g. extra_conf="rgw lc debug interval = 1"),
    stopped when the block ends; `with rgw_server(str(tmp_path / "rgw")) as r:`.
    The session fixture `rgw` is one of these."""
    started = time.monotonic()
    last = None
    for attempt in range(2):  # a port taken meanwhile: pick others
        d = os.path.join(dir, f"try{attempt}")
        os.makedirs(d)
        server = Rgw(d, *free_ports(3), extra_conf=extra_conf)
        try:
            server.start()
            break
        except AssertionError as e:
            last = e
            try:
                server.stop()
            except AssertionError:
                pass
    else:
        raise last
    server.start_seconds = time.monotonic() - started
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rgw(tmp_path_factory):
    with rgw_server(str(tmp_path_factory.mktemp("rgw"))) as server:
        yield server


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    last = None
    for attempt in range(2):
        d = str(tmp_path_factory.mktemp("sshd"))
        server = Sshd(d, free_ports(1)[0])
        try:
            server.start()
            break
        except AssertionError as e:
            last = e
            try:
                server.stop()
            except AssertionError:
                pass
    else:
        raise last
    try:
        yield server
    finally:
        server.stop()


class MongoServer:
    """One tests/servers/mongo_server.py process on a free port of 127.0.0.1;
    its logs and the expected data set (--dump-expected) in `dir`.

    uri is for drivers (pymongo, directConnection); a custodian config wants
    "mongodb://127.0.0.1:%d/billing" % server.port. unknown() is what the
    server met and did not know (commands, internal errors): a test fails on
    anything there. python3-bson is imported only when expected() is used.
    """

    def __init__(self, dir, docs, seed, replset=None, start_timeout=120, billing=None,
                 port=None, writable=False):
        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        self.docs = docs
        self.port = port or free_ports(1)[0]
        self.unknown_log = os.path.join(self.dir, "unknown.log")
        self.request_log = os.path.join(self.dir, "requests.log")
        self.expected_path = os.path.join(self.dir, "expected.bson")
        self.stderr_path = os.path.join(self.dir, "server.err")
        cmd = [MONGO_PYTHON, MONGO_SERVER, "--port", str(self.port), "--seed", str(seed),
               "--docs", str(docs), "--unknown-log", self.unknown_log,
               "--request-log", self.request_log, "--dump-expected", self.expected_path]
        if replset:
            cmd += ["--replset", replset]
        if billing:
            cmd += ["--billing", str(billing)]
        if writable:
            cmd += ["--writable"]
        started = time.monotonic()
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL)
        deadline = started + start_timeout
        line = b""
        os.set_blocking(self.proc.stdout.fileno(), False)
        while b"ready" not in line:
            if self.proc.poll() is not None:
                raise AssertionError("mongo_server.py exited %s before ready:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("mongo_server.py not ready after %d s:\n%s"
                                     % (start_timeout, self.log_tail()))
            chunk = self.proc.stdout.read()
            if chunk:
                line += chunk
            else:
                time.sleep(0.05)
        self.start_seconds = time.monotonic() - started
        self.uri = "mongodb://127.0.0.1:%d/?directConnection=true&appname=fixture-test" % self.port

    def log_tail(self):
        self.stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read()[-4000:].decode(errors="replace")

    def client(self, **kw):
        import pymongo
        return pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=10000, **kw)

    def unknown(self):
        if not os.path.exists(self.unknown_log):
            return ""
        with open(self.unknown_log) as f:
            return f.read()

    def clear_unknown(self):
        if os.path.exists(self.unknown_log):
            os.unlink(self.unknown_log)

    def requests(self):
        with open(self.request_log) as f:
            return [json.loads(line) for line in f]

    def clear_requests(self):
        open(self.request_log, "w").close()

    def expected(self):
        """collection -> (header, [raw document bytes]) from --dump-expected,
        in listCollections order; header: {db, collection, type, options,
        uuid (32 hex, "" for a view), indexes, count}."""
        from collections import OrderedDict

        import bson
        from bson.binary import UuidRepresentation
        from bson.codec_options import CodecOptions

        decode = CodecOptions(document_class=OrderedDict,
                              uuid_representation=UuidRepresentation.UNSPECIFIED)
        out = OrderedDict()
        with open(self.expected_path, "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):
            n = int.from_bytes(data[pos:pos + 4], "little")
            header = bson.decode(data[pos:pos + n], decode)
            pos += n
            docs = []
            for _ in range(header["count"]):
                m = int.from_bytes(data[pos:pos + 4], "little")
                docs.append(data[pos:pos + m])
                pos += m
            out[header["collection"]] = (header, docs)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr.close()


@contextlib.contextmanager
def mongo_server(dir, docs=20000, seed=1, replset=None, billing=None, port=None, writable=False):
    """A MongoServer for the block, stopped at its end; fails the block if
    the server met any command it did not know. In a module:

        @pytest.fixture(scope="module")
        def billing(tmp_path_factory):
            with mongo_server(tmp_path_factory.mktemp("mongo"), docs=20000, seed=21) as s:
                yield s
    """
    server = MongoServer(dir, docs, seed, replset=replset, billing=billing, port=port,
                         writable=writable)
    try:
        yield server
    finally:
        unknown = server.unknown()
        server.stop()
    assert unknown == "", "the MongoDB test server met commands it does not know:\n" + unknown
