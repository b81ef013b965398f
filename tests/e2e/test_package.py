"""
The Debian package, installed on this machine as an administrator would
(CI runs as root on a throwaway bookworm machine):

- `make deb` builds it once per session, lintian is clean, and `dpkg-deb -c`
  lists exactly the intended files;
- `dpkg -i` creates the user, the folders with their modes and the conffile,
  `custodian --version` matches the package, the next steps are printed;
- the unit passes `systemd-analyze verify`, and `systemd-analyze security
  --offline=true` scores it 2.0 or lower;
- with the documented ACLs, the agent, as the custodian user in the unit's
  sandbox (systemd-run where systemd runs, else unshare + setpriv with the same
  user, no capabilities and the same read-only paths), ships a file from a
  folder it can only read, and reads nothing else;
- reinstalling keeps the catalog; an upgrade migrates an old one;
- `dpkg -r` and `dpkg -P` leave what they should.

The tests run in this order and share the installation. They refuse to touch
a custodian that someone configured on this machine.
"""
import glob
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import sha256_file, wait_for

MARK = "; written by tests/e2e/test_package.py\n"
CONF = "/etc/custodian/custodian.conf"
STATE = "/var/lib/custodian"
KEYS = "/etc/custodian/keys"
UNIT = "/lib/systemd/system/custodian.service"
SYSTEMD_RUNS = os.path.isdir("/run/systemd/system")
APP_USER = "daemon"  # owns the data folders, as the app's user would

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="installs the package: run as root (CI does)")


def sh(*argv, check=True, input=None, **kw):
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=input,
                       errors="replace",
                       stdin=None if input is not None else subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def as_custodian(*argv, check=True):
    return sh("runuser", "-u", "custodian", "--", *argv, check=check)


def owner(path):
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, \
        stat.S_IMODE(st.st_mode)


def installed_version():
    p = sh("dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Version}", "custodian", check=False)
    return p.stdout.split()[1] if p.returncode == 0 and p.stdout.startswith("ii") else None


def changelog_version():
    with open("packaging/debian/changelog") as f:
        return f.readline().split()[1].strip("()")


# --- the session: build once, clean up everything at the end ---

@pytest.fixture(scope="module")
def machine():
    """What this machine had before; everything the tests add is taken away after."""
    ours = os.path.exists(CONF) and open(CONF).read().startswith(MARK)
    if not ours and (os.path.exists(CONF) or os.path.exists(f"{STATE}/catalog.db")):
        pytest.fail(f"{CONF} or {STATE}/catalog.db exists and was not made by these tests: "
                    "this machine runs custodian; the package tests install and purge it, "
                    "run them elsewhere")
    had_user = sh("getent", "passwd", "custodian", check=False).returncode == 0
    had_group = sh("getent", "group", "custodian", check=False).returncode == 0
    if SYSTEMD_RUNS:
        # Installing with a config would start the real service under our feet.
        sh("systemctl", "mask", "--runtime", "custodian.service")
    root = tempfile.mkdtemp(prefix="custodian-pkgtest-", dir="/srv")
    os.chmod(root, 0o755)
    yield {"root": root}
    if sh("dpkg-query", "-W", "custodian", check=False).returncode == 0:
        sh("dpkg", "-P", "custodian", check=False)
    for path in (STATE, "/etc/custodian"):
        shutil.rmtree(path, ignore_errors=True)
        # Purge removes them (a test checks); an override naming a group that is gone
        # would stop dpkg on this machine, so make sure.
        if sh("dpkg-statoverride", "--list", path, check=False).returncode == 0:
            sh("dpkg-statoverride", "--remove", path, check=False)
    if not had_user:
        sh("userdel", "custodian", check=False)
    if not had_group:
        sh("groupdel", "custodian", check=False)
    if SYSTEMD_RUNS:
        sh("systemctl", "unmask", "--runtime", "custodian.service", check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deb(machine):
    """`make deb`, once: the package and what lintian said."""
    p = sh("make", "deb", check=False)
    assert p.returncode == 0, f"make deb failed:\n{p.stdout[-5000:]}\n{p.stderr[-5000:]}"
    arch = sh("dpkg", "--print-architecture").stdout.strip()
    path = os.path.abspath(f"build/custodian_{changelog_version()}_{arch}.deb")
    assert os.path.exists(path), (path, p.stdout[-2000:])
    return {"path": path, "log": p.stdout + p.stderr}


def dpkg_install(deb):
    p = sh("dpkg", "-i", deb["path"])
    return p.stdout + p.stderr


@pytest.fixture(scope="module")
def installed(deb):
    """The package as `dpkg -i` first leaves it (the output kept for the tests)."""
    if installed_version() is not None:
        sh("dpkg", "-P", "custodian")
    return {"output": dpkg_install(deb)}


# --- the data folders, the keys and the config, as docs/install.md says ---

def acl_commands(app):
    """The setfacl lines of docs/install.md, for our own /app."""
    text = open("docs/install.md").read()
    block = re.search(r"<!-- acl-setup:.*?-->\s*```sh\n(.*?)```", text, re.S).group(1)
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    assert lines and all(ln.startswith("setfacl ") for ln in lines), lines
    return [[a.replace("/app", app, 1) if a.startswith("/app") else a for a in shlex.split(ln)]
            for ln in lines]


def as_app(*argv, input=None):
    return sh("setpriv", f"--reuid={APP_USER}", f"--regid={APP_USER}", "--clear-groups", "--",
              *argv, input=input)


@pytest.fixture(scope="module")
def configured(installed, machine):
    root = machine["root"]
    app = os.path.join(root, "app")
    data = os.path.join(app, "data")
    dirs = {"app": app, "data": data, "invoices": os.path.join(data, "invoices"),
            "images": os.path.join(data, "images"), "private": os.path.join(app, "private")}
    uid, gid = pwd.getpwnam(APP_USER).pw_uid, grp.getgrnam(APP_USER).gr_gid
    for name in ("app", "data", "invoices", "images", "private"):
        os.makedirs(dirs[name], exist_ok=True)
        os.chown(dirs[name], uid, gid)
        os.chmod(dirs[name], 0o700 if name == "private" else 0o750)
    as_app("sh", "-c", f"umask 077; printf 'patient ledger' > {dirs['private']}/ledger.txt")
    # An invoice from before the ACLs, private to the app's user.
    as_app("sh", "-c", f"umask 077; head -c 20000 /dev/urandom > {dirs['invoices']}/INV-1.pdf")
    for argv in acl_commands(app):
        sh(*argv)

    dest = os.path.join(root, "dest")
    os.makedirs(dest, exist_ok=True)
    shutil.chown(dest, "custodian", "custodian")
    os.chmod(dest, 0o700)
    if not os.path.exists(os.path.join(KEYS, "backup.pub")):
        # The next steps the package prints, as root.
        sh("custodian", "keygen", "--out", KEYS)
        sh("chgrp", "custodian", KEYS)
        sh("chmod", "0750", KEYS)
        sh("chown", "custodian:", f"{KEYS}/naming.key", f"{KEYS}/signing.key")
        # "Move backup.key off this host": here, to a folder only the restorer reads.
        offhost = os.path.join(root, "offhost")
        os.makedirs(offhost, exist_ok=True)
        shutil.move(f"{KEYS}/backup.key", os.path.join(offhost, "backup.key"))
        shutil.chown(offhost, "custodian", "custodian")
        shutil.chown(os.path.join(offhost, "backup.key"), "custodian", "custodian")
    import datetime
    import zoneinfo
    far = datetime.datetime.now(zoneinfo.ZoneInfo("America/New_York")) + datetime.timedelta(
        hours=12)
    text = open("/etc/custodian/custodian.conf.example").read()
    text = re.sub(r"(?m)^path\s*=\s*/app/data/(\S+).*$", "", text)
    text = text.replace("[watch]\n", f"[watch]\npath = {dirs['invoices']}\n"
                                     f"path = {dirs['images']}\n")
    text = re.sub(r"(?m)^path = /mnt/nas/custodian$", f"path = {dest}", text)
    text = re.sub(r"(?m)^daily_at\s*=.*$", f"daily_at = {far:%H:%M}", text)
    assert f"path = {dest}" in text and dirs["invoices"] in text, text
    sh("install", "-m", "0640", "-g", "custodian", "/dev/null", CONF)
    with open(CONF, "w") as f:
        f.write(MARK + text)
    # A restorer's config: the same, plus the secret key that stays off the host.
    restorer = os.path.join(root, "restorer.conf")
    with open(restorer, "w") as f:
        f.write(MARK + text.replace("[keys]\n", f"[keys]\nsecret_key = "
                                    f"{os.path.join(root, 'offhost', 'backup.key')}\n"))
    shutil.chown(restorer, "root", "custodian")
    os.chmod(restorer, 0o640)
    return {**dirs, "dest": dest, "root": root, "restorer": restorer}


# --- running the agent in the unit's sandbox ---

def unit_service_lines():
    lines, section = [], None
    for line in open(UNIT):
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            lines.append(line)
    return lines


class SandboxedAgent:
    """custodian agent as the unit runs it: user custodian, no capabilities, the
    file system read-only but the state folder and the destination, the data
    folders read-only. systemd-run where systemd runs; else unshare + setpriv."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.log = os.path.join(cfg["root"], "agent.log")
        self.unit = f"custodian-pkgtest-{os.getpid()}"
        self.proc = None

    def wrap(self, argv):
        """argv run in the sandbox (the unshare + setpriv flavour)."""
        data, dest = self.cfg["data"], self.cfg["dest"]
        script = "\n".join([
            "set -e",
            # ReadOnlyPaths= for the data folders
            f"mount --bind {data} {data}", f"mount -o remount,bind,ro {data} {data}",
            # ProtectSystem=strict: all read-only but what the unit makes writable
            f"mount --bind {STATE} {STATE}", f"mount --bind {dest} {dest}",
            "mount -o remount,bind,ro /",
            # PrivateTmp=, ProtectHome=
            "mount -t tmpfs tmpfs /tmp", "mount -t tmpfs tmpfs /var/tmp",
            "for d in /home /root; do mount -t tmpfs -o ro tmpfs $d; done",
            # User=, CapabilityBoundingSet= (empty), NoNewPrivileges=
            'exec setpriv --reuid=custodian --regid=custodian --init-groups --bounding-set=-all '
            '--inh-caps=-all --no-new-privs -- "$@"'])
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sandbox",
                *argv]

    def start(self):
        agent = ["/usr/bin/custodian", "-c", CONF, "agent"]
        if SYSTEMD_RUNS:
            props = [f"--property={ln}" for ln in unit_service_lines()
                     if not ln.startswith("ExecStart=")]
            props += [f"--property=ReadOnlyPaths={self.cfg['data']}",
                      f"--property=ReadWritePaths={self.cfg['dest']}"]
            sh("systemd-run", f"--unit={self.unit}", *props, "--", *agent)
        else:
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(self.wrap(agent), stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)
        wait_for(lambda: "agent started" in self.text() or not self.running(), 60,
                 "the sandboxed agent to start")
        assert self.running(), f"the sandboxed agent exited:\n{self.text()}"

    def running(self):
        if SYSTEMD_RUNS:
            return sh("systemctl", "is-active", "--quiet", self.unit, check=False).returncode == 0
        return self.proc.poll() is None

    def text(self):
        if SYSTEMD_RUNS:
            return sh("journalctl", "-o", "cat", "-u", self.unit, check=False).stdout
        return open(self.log, errors="replace").read() if os.path.exists(self.log) else ""

    def stop(self):
        if SYSTEMD_RUNS:
            sh("systemctl", "stop", self.unit, check=False)
            return 0
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the agent did not stop on SIGTERM:\n{self.text()}")


def catalog_sha(path):
    """sha256 of path's live version in the installed catalog, or None."""
    try:
        c = sqlite3.connect(f"file:{STATE}/catalog.db?mode=ro", uri=True, timeout=10)
        try:
            rows = c.execute("SELECT lower(hex(v.sha256)), v.deleted_at FROM versions v JOIN "
                             "paths p ON p.id = v.path_id WHERE p.path = ? ORDER BY v.id DESC "
                             "LIMIT 1", (os.fsencode(path),)).fetchall()
        finally:
            c.close()
    except sqlite3.OperationalError:
        return None
    return rows[0][0] if rows and rows[0][1] is None else None


def migration_sql(n):
    """Migration n as catalog/schema.c has it (released migrations never change)."""
    src = open("catalog/schema.c").read()
    body = src.split("migrations[] = {", 1)[1]
    start = body.index(f"/* {n}:")
    end = body.find(f"/* {n + 1}:", start)
    chunk = body[start:end if end >= 0 else body.index("};", start)]
    chunk = re.sub(r"/\*.*?\*/", "", chunk, flags=re.S)
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', chunk)).encode().decode("unicode_escape")


def latest_schema():
    return int(sh("/usr/bin/custodian", "--version").stdout.splitlines()[1].split()[-1])


# --- the tests ---

def test_make_deb_builds_and_lintian_is_clean(deb):
    lintian = [ln for ln in deb["log"].splitlines() if re.match(r"^[EWIPNX]: ", ln)]
    print("lintian:", "\n".join(lintian) or "(nothing to report)")
    assert not [ln for ln in lintian if ln[:2] in ("E:", "W:")], lintian
    assert re.fullmatch(r"custodian_[\w.+~-]+_\w+\.deb", os.path.basename(deb["path"]))
    # Every override says why.
    overrides = open("packaging/debian/custodian.lintian-overrides").read().split("\n\n")
    for block in overrides:
        tags = [ln for ln in block.splitlines() if ln.startswith("custodian:")]
        assert not tags or block.lstrip().startswith("#"), f"override without a reason: {block}"


def test_deb_lists_exactly_the_intended_files(deb):
    listing = sh("dpkg-deb", "-c", deb["path"]).stdout.splitlines()
    entries = {}
    for line in listing:
        mode, _, _, _, _, name = line.split(None, 5)
        entries[name[1:].rstrip("/")] = mode
    files = {n: m for n, m in entries.items() if not m.startswith("d")}
    doc = "/usr/share/doc/custodian"
    docs = ["README.md"] + [os.path.basename(p) for p in glob.glob("docs/*.md")]
    want = {
        "/usr/bin/custodian",
        "/lib/systemd/system/custodian.service",
        "/etc/custodian/custodian.conf.example",
        "/usr/share/man/man8/custodian.8.gz",
        "/usr/share/man/man5/custodian.conf.5.gz",
        "/usr/share/bash-completion/completions/custodian",
        "/usr/share/lintian/overrides/custodian",
        f"{doc}/copyright",
        f"{doc}/changelog.gz",
    } | {f"{doc}/{d}" for d in docs} | {
        f"{doc}/examples/{os.path.basename(p)}" for p in glob.glob("packaging/examples/*")}
    # dh_compress gzips the larger documents; which ones is its business.
    got = {n[:-3] if n.startswith(doc) and n.endswith(".md.gz") else n for n in files}
    assert got == want, f"unexpected: {sorted(got - want)}; missing: {sorted(want - got)}"
    assert files["/usr/bin/custodian"] == "-rwxr-xr-x"
    assert all(m == "-rw-r--r--" for n, m in files.items() if n != "/usr/bin/custodian"), files
    assert "/var/lib/custodian" in entries
    conffiles = sh("dpkg-deb", "-I", deb["path"], "conffiles").stdout.split()
    assert conffiles == ["/etc/custodian/custodian.conf.example"], conffiles


def test_install_creates_the_user_folders_and_conffile(installed):
    out = installed["output"]
    user = pwd.getpwnam("custodian")
    assert user.pw_uid < 1000 and user.pw_dir == STATE and user.pw_shell == "/usr/sbin/nologin"
    assert grp.getgrgid(user.pw_gid).gr_name == "custodian"
    assert owner("/etc/custodian") == ("root", "custodian", 0o750)
    assert owner(STATE) == ("custodian", "custodian", 0o700)
    assert owner("/etc/custodian/custodian.conf.example")[2] == 0o644
    conffiles = sh("dpkg-query", "-W", "-f", "${Conffiles}", "custodian").stdout
    assert "/etc/custodian/custodian.conf.example" in conffiles
    # The same version everywhere.
    version = sh("/usr/bin/custodian", "--version").stdout.splitlines()[0]
    assert version == f"custodian {installed_version()}" == f"custodian {changelog_version()}"
    # Nothing runs until there is a config; the operator is told what to do.
    assert not os.path.exists(CONF)
    unit = open(UNIT).read()
    for line in ("ConditionPathExists=/etc/custodian/custodian.conf", "Type=notify",
                 "User=custodian", "WatchdogSec="):
        assert line in unit, line
    assert os.path.islink("/etc/systemd/system/multi-user.target.wants/custodian.service")
    for step in ("custodian keygen --out /etc/custodian/keys", "OFF this host",
                 "custodian.conf.example /etc/custodian/custodian.conf", "custodian init",
                 "custodian doctor",
                 "systemctl start custodian"):
        assert step in out, f"next step missing from the install output: {step}\n{out}"
    # Installed files: man pages render, completion is where bash looks.
    assert sh("man", "-w", "custodian").stdout.strip().endswith("custodian.8.gz")
    assert sh("man", "-w", "5", "custodian.conf").stdout.strip().endswith("custodian.conf.5.gz")


def test_unit_verifies_and_scores_ok(installed, capsys):
    p = sh("systemd-analyze", "verify", UNIT, check=False)
    ours = [ln for ln in (p.stdout + p.stderr).splitlines() if "custodian" in ln]
    assert p.returncode == 0 and not ours, p.stdout + p.stderr
    p = sh("systemd-analyze", "security", "--offline=true", "--no-pager", UNIT, check=False)
    m = re.search(r"Overall exposure level for custodian\.service: ([\d.]+) (\w+)", p.stdout)
    assert m, p.stdout + p.stderr
    with capsys.disabled():  # shown in `make test`'s output too
        print(f"\nsystemd-analyze security --offline=true {UNIT}: {m.group(1)} {m.group(2)}")
    assert float(m.group(1)) <= 2.0, p.stdout
    # The documented drop-ins are valid on top of the unit.
    units = tempfile.mkdtemp(prefix="custodian-units-")
    try:
        shutil.copy(UNIT, units)
        os.mkdir(os.path.join(units, "custodian.service.d"))
        for example in glob.glob("/usr/share/doc/custodian/examples/*.conf"):
            shutil.copy(example, os.path.join(units, "custodian.service.d"))
        p = subprocess.run(["systemd-analyze", "verify", os.path.join(units, UNIT.split("/")[-1])],
                           capture_output=True, text=True,
                           env={**os.environ, "SYSTEMD_UNIT_PATH": units + ":"})
        ours = [ln for ln in (p.stdout + p.stderr).splitlines() if "custodian" in ln]
        assert p.returncode == 0 and not ours, p.stdout + p.stderr
    finally:
        shutil.rmtree(units)


def test_acls_let_the_sandboxed_agent_read_the_data_and_nothing_more(configured):
    c = configured
    inv1 = os.path.join(c["invoices"], "INV-1.pdf")
    # What the ACLs give the custodian user, and what they do not.
    assert as_custodian("cat", inv1).returncode == 0
    assert as_custodian("ls", c["invoices"]).returncode == 0
    for argv in (["ls", c["app"]], ["cat", os.path.join(c["private"], "ledger.txt")],
                 ["touch", os.path.join(c["invoices"], "by-agent")],
                 ["sh", "-c", f"echo x >> {inv1}"]):
        assert as_custodian(*argv, check=False).returncode != 0, f"custodian may {argv}"
    # The documented caveat: a file the app makes private explicitly stays hidden.
    # (A umask does not: under a default ACL it is not applied.)
    as_app("/usr/bin/python3", "-c", "import os, sys; os.close(os.open(sys.argv[1], "
           "os.O_CREAT | os.O_WRONLY, 0o600))", f"{c['images']}/private.png")
    assert as_custodian("cat", f"{c['images']}/private.png", check=False).returncode != 0
    os.unlink(f"{c['images']}/private.png")

    # The operator's last steps, as the agent will run.
    init = as_custodian("/usr/bin/custodian", "-c", CONF, "init")
    assert "catalog ready" in init.stdout, init.stdout
    doctor = as_custodian("/usr/bin/custodian", "-c", CONF, "doctor", check=False)
    print(doctor.stdout)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr

    agent = SandboxedAgent(c)
    if not SYSTEMD_RUNS:
        # The sandbox: the data folder is read-only even to root there.
        probe = sh(*agent.wrap(["touch", os.path.join(c["invoices"], "probe")]), check=False)
        assert probe.returncode != 0, "the data folder is writable in the sandbox"
        write_state = sh(*agent.wrap(["touch", "/etc/custodian/probe"]), check=False)
        assert write_state.returncode != 0, "/etc is writable in the sandbox"
    agent.start()
    try:
        # A new invoice, written by the app's user after the ACLs were set.
        inv2 = os.path.join(c["invoices"], "INV-2.pdf")
        as_app("sh", "-c", f"head -c 30000 /dev/urandom > {inv2}")
        expected = {inv1: sha256_file(inv1), inv2: sha256_file(inv2)}
        wait_for(lambda: all(catalog_sha(p) == s for p, s in expected.items()), 60,
                 f"both invoices shipped by the sandboxed agent\n{agent.text()}")
        # Restored where the secret key is (here: by the custodian user, off the sandbox).
        for path in expected:
            restored = subprocess.run(["runuser", "-u", "custodian", "--", "/usr/bin/custodian",
                                       "-c", c["restorer"], "restore", "file", path, "--stdout"],
                                      capture_output=True, check=True).stdout
            assert restored == open(path, "rb").read(), path
        assert "Permission denied" not in agent.text(), agent.text()
    finally:
        assert agent.stop() == 0, agent.text()
    # Everything the agent wrote is its own.
    for dirpath, dirnames, filenames in os.walk(STATE):
        for name in dirnames + filenames:
            assert owner(os.path.join(dirpath, name))[0] == "custodian", (dirpath, name)


def catalog_counts():
    c = sqlite3.connect(f"file:{STATE}/catalog.db?mode=ro", uri=True)
    try:
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("paths", "versions", "objects", "copies", "audit")}
    finally:
        c.close()


def test_reinstall_keeps_the_catalog(configured, deb):
    # The agent (previous test) or at least a scan has filled the catalog.
    as_custodian("/usr/bin/custodian", "-c", CONF, "scan")
    before = catalog_counts()
    assert before["paths"] >= 1, before
    out = dpkg_install(deb)
    assert re.search(r"schema version \d+, current", out), out
    assert catalog_counts() == before
    assert "OFF this host" not in out, "the next steps are for a host without a config"
    for dirpath, dirnames, filenames in os.walk(STATE):
        for name in dirnames + filenames:
            assert owner(os.path.join(dirpath, name))[0] == "custodian", (dirpath, name)
    assert as_custodian("/usr/bin/custodian", "-c", CONF, "audit", "verify").returncode == 0


def test_upgrade_migrates_an_old_catalog(configured, deb):
    aside = os.path.join(configured["root"], "catalog-aside")
    os.makedirs(aside, exist_ok=True)
    for f in glob.glob(f"{STATE}/catalog.db*"):
        shutil.move(f, aside)
    try:
        old = f"{STATE}/catalog.db"
        c = sqlite3.connect(old)
        c.executescript(migration_sql(1))
        c.execute("INSERT INTO paths (id, path) VALUES (1, ?)", (b"/app/data/invoices/OLD.pdf",))
        c.execute("INSERT INTO objects VALUES ('ab', x'00', 5, 9, x'00', 1, 1000)")
        c.execute("INSERT INTO versions (path_id, kind, size, mtime_ns, inode, sha256, object_id, "
                  "first_seen, shipped_at) VALUES (1, 'file', 5, 1, 1, x'00', 'ab', 1000, 1000)")
        c.execute("PRAGMA user_version = 1")
        c.commit()
        c.close()
        shutil.chown(old, "custodian", "custodian")
        os.chmod(old, 0o600)

        out = dpkg_install(deb)
        latest = latest_schema()
        assert f"migrated from schema version 1 to {latest}" in out, out
        c = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
        try:
            assert c.execute("PRAGMA user_version").fetchone()[0] == latest
            assert c.execute("SELECT count(*) FROM versions").fetchone()[0] == 1
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            c.close()
        for f in glob.glob(f"{STATE}/catalog.db*"):
            assert owner(f)[0] == "custodian", f
    finally:
        for f in glob.glob(f"{STATE}/catalog.db*"):
            os.unlink(f)
        for f in glob.glob(f"{aside}/catalog.db*"):
            shutil.move(f, STATE)


def test_remove_keeps_state_and_keys_purge_removes_only_the_packages(configured, deb):
    kept = [CONF, f"{KEYS}/backup.pub", f"{KEYS}/naming.key", f"{KEYS}/signing.key",
            f"{STATE}/catalog.db"]
    dest_before = sorted(os.path.relpath(os.path.join(d, f), configured["dest"])
                         for d, _, fs in os.walk(configured["dest"]) for f in fs)
    assert dest_before, "the destination should hold the shipped objects"

    out = sh("dpkg", "-r", "custodian").stdout
    for gone in ("/usr/bin/custodian", UNIT, "/usr/share/man/man8/custodian.8.gz",
                 "/usr/share/bash-completion/completions/custodian"):
        assert not os.path.exists(gone), gone
    for path in kept + ["/etc/custodian/custodian.conf.example"]:
        assert os.path.exists(path), f"dpkg -r removed {path}\n{out}"
    assert owner(STATE) == ("custodian", "custodian", 0o700)
    status = sh("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "custodian").stdout
    assert status.startswith("rc"), status

    p = sh("dpkg", "-P", "custodian")
    assert sh("dpkg-query", "-W", "custodian", check=False).returncode != 0
    assert not os.path.exists("/etc/custodian/custodian.conf.example")
    for path in kept:
        assert os.path.exists(path), f"dpkg -P removed {path}"
    for path in ("/etc/custodian", STATE):
        assert sh("dpkg-statoverride", "--list", path, check=False).returncode != 0, path
    assert "kept /var/lib/custodian" in p.stdout, p.stdout
    assert not os.path.lexists("/etc/systemd/system/multi-user.target.wants/custodian.service")
    # Files the custodian user owns remain, so the user and group do too.
    assert pwd.getpwnam("custodian") and grp.getgrnam("custodian")
    dest_after = sorted(os.path.relpath(os.path.join(d, f), configured["dest"])
                        for d, _, fs in os.walk(configured["dest"]) for f in fs)
    assert dest_after == dest_before
