"""
Bad configuration ends in exit status 2 and a message naming the problem.
"""
import os
import subprocess

from conftest import BIN


def test_unknown_key(demo):
    with open(demo.conf, "a") as f:
        f.write("\n[agent]\ncolour = blue\n")
    p = demo.run("agent", check=2)
    assert b"colour" in p.stderr and b"unknown key" in p.stderr, p.stderr
    assert b"custodian.conf:" in p.stderr  # file and line


def test_missing_watch_folder(demo):
    os.rmdir(demo.bug_reports)
    p = demo.run("agent", check=2)
    assert b"bug-reports" in p.stderr and b"does not exist" in p.stderr, p.stderr


def test_unreadable_key_file(demo):
    os.unlink(os.path.join(demo.root, "keys", "naming.key"))
    os.mkdir(os.path.join(demo.root, "keys", "naming.key"))  # not a readable file
    p = demo.run("agent", check=2)
    assert b"naming.key" in p.stderr, p.stderr
    os.rmdir(os.path.join(demo.root, "keys", "naming.key"))
    p = demo.run("agent", check=2)
    assert b"naming.key" in p.stderr, p.stderr


def test_key_file_readable_by_others(demo):
    os.chmod(os.path.join(demo.root, "keys", "naming.key"), 0o644)
    p = demo.run("agent", check=2)
    assert b"readable by other users" in p.stderr and b"chmod 600" in p.stderr, p.stderr


def test_bad_value_and_missing_config(demo):
    demo.set_option("agent", "settle_ms", "soon")
    p = demo.run("agent", check=2)
    assert b"settle_ms" in p.stderr, p.stderr
    missing = demo.conf + ".nope"
    q = subprocess.run([BIN, "-c", missing, "status"], capture_output=True)
    assert q.returncode == 2 and b"nope" in q.stderr, q.stderr


def test_restore_without_secret_key_is_a_config_error(demo):
    demo.set_option("keys", "secret_key", "")
    text = open(demo.conf).read().replace("secret_key = \n", "")
    open(demo.conf, "w").write(text)
    p = demo.run("restore", "file", os.path.join(demo.invoices, "x.pdf"), check=2)
    assert b"secret_key" in p.stderr, p.stderr


def test_configuration_doc_matches_key_table():
    """docs/configuration.md is generated from the key table; they must agree."""
    rows = subprocess.run([BIN, "config", "reference"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1:]
    doc = open("docs/configuration.md").read()
    for row in rows:
        section, key = row.split("\t")[:2]
        assert f"## [{section}]" in doc and f"| `{key}` |" in doc, \
            f"[{section}] {key} missing from docs/configuration.md: run scripts/gen-config-doc.py"


def test_example_config_parses():
    q = subprocess.run([BIN, "-c", "packaging/custodian.conf.example", "scan"],
                       capture_output=True)
    # parsing passed: the first complaint is the (absent) data folder
    assert q.returncode == 2 and b"/app/data/images does not exist" in q.stderr, q.stderr
