"""
custodian(8), custodian.conf(5) and the bash completion are generated from the
command table and the key table (scripts/gen-man.py, scripts/gen-completion.py),
as docs/configuration.md is: regenerating them must change nothing, the pages
must render without a warning, and the completion must complete.
"""
import os
import shlex
import subprocess

from conftest import BIN

MAN_PAGES = ["custodian.8", "custodian.conf.5"]
COMPLETION = "packaging/bash-completion/custodian"


def changelog_version():
    with open("packaging/debian/changelog") as f:
        return f.readline().split()[1].strip("()")


def test_version_comes_from_the_changelog():
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == f"custodian {changelog_version()}", out


def test_man_pages_match_the_tables(tmp_path):
    subprocess.run(["/usr/bin/python3", "scripts/gen-man.py", BIN, str(tmp_path)], check=True)
    for page in MAN_PAGES:
        fresh = (tmp_path / page).read_text()
        committed = open(os.path.join("packaging/man", page)).read()
        assert fresh == committed, f"packaging/man/{page} is out of date: run make docs"


def test_man_pages_render_without_warnings():
    for page in MAN_PAGES:
        path = os.path.join("packaging/man", page)
        g = subprocess.run(["groff", "-ww", "-z", "-man", "-Tutf8", path], capture_output=True,
                           text=True)
        assert g.returncode == 0 and g.stderr == "", f"groff on {path}:\n{g.stderr}"
        m = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                           env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat"})
        assert m.returncode == 0 and m.stderr == "", f"man -l {path}:\n{m.stderr}"
        assert "custodian" in m.stdout


def test_every_command_and_key_is_in_the_pages():
    """Redundant with the regeneration, but names what is missing."""
    man8 = open("packaging/man/custodian.8").read()
    man5 = open("packaging/man/custodian.conf.5").read()
    commands = subprocess.run([BIN, "help", "--reference"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[1:]
    for row in commands:
        assert f"\\fBcustodian {row.split(chr(9))[0]}\\fR" in man8, row
    keys = subprocess.run([BIN, "config", "reference"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1:]
    for row in keys:
        key = row.split("\t")[1].replace("-", "\\-")
        assert f"\\fB{key}\\fR = " in man5, row


def test_completion_matches_the_table(tmp_path):
    out = tmp_path / "custodian"
    subprocess.run(["/usr/bin/python3", "scripts/gen-completion.py", BIN, str(out)], check=True)
    assert out.read_text() == open(COMPLETION).read(), f"{COMPLETION} is out of date: make docs"
    subprocess.run(["bash", "-n", COMPLETION], check=True)


def complete(*words, env=None):
    """What bash completes for the command line `words` (the last one being typed)."""
    script = (
        "source /usr/share/bash-completion/bash_completion\n"
        f"source {COMPLETION}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}\n'
        '_custodian custodian "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n')
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stderr
    return sorted(w for w in p.stdout.splitlines() if w)


def test_completion_of_commands_destinations_and_options(demo):
    demo.set_option("destination offsite", "type", "local")
    demo.set_option("destination offsite", "path", os.path.join(demo.root, "offsite"))
    assert complete("custodian", "re") == ["report", "restore", "restore-test"]
    assert complete("custodian", "restore", "") == ["db", "file", "jobs", "point", "snapshot"]
    assert complete("custodian", "snapshot", "") == ["list"]
    assert "--pending" in complete("custodian", "snapshot", "--")
    assert complete("custodian", "catalog", "m") == ["migrate"]
    assert "--version" in complete("custodian", "--")
    # Options of the command being typed, and --json.
    assert complete("custodian", "restore", "file", "/x", "--") == sorted(
        ["--at", "--to", "--stdout", "--from", "--force", "--literal", "--escaped", "--wait",
         "--json"])
    # Destination names from the config given with -c, or $CUSTODIAN_CONFIG.
    assert complete("custodian", "-c", demo.conf, "restore", "file", "/x", "--from", "") == [
        "local", "offsite"]
    assert complete("custodian", "verify", "--from", "", env={"CUSTODIAN_CONFIG": demo.conf}) == [
        "local", "offsite"]
    # Folders where a folder is wanted.
    subdir = os.path.join(demo.root, "restored-here")
    os.mkdir(subdir)
    assert complete("custodian", "restore", "point", "2026-01-01", "--to",
                    os.path.join(demo.root, "restored-")) == [subdir]
