#!/usr/bin/python3
"""Write packaging/man/custodian.8 and packaging/man/custodian.conf.5.

The commands come from the command table (`custodian help --reference`,
agent/commands.c), the keys from the key table (`custodian config reference`,
agent/config.c), the version from `custodian --version` and the date from the
top entry of packaging/debian/changelog, the way scripts/gen-config-doc.py
writes docs/configuration.md. The ACL lines are the ones in docs/install.md.
Do not edit the pages by hand: a test regenerates them and compares.

usage: scripts/gen-man.py [BINARY [OUTDIR]]
"""
import email.utils
import os
import re
import subprocess
import sys

binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/custodian"
outdir = sys.argv[2] if len(sys.argv) > 2 else "packaging/man"


def run(*args):
    return subprocess.run([binary, *args], check=True, capture_output=True,
                          text=True).stdout


def esc(text):
    """Plain text to roff: backslashes, option dashes, a leading dot or quote."""
    text = text.replace("\\", "\\e")
    text = re.sub(r"(?<![\w])-", r"\\-", text)
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def synopsis(usage):
    """A usage string with options in bold and placeholders in italics."""
    out = []
    for opt, meta, other in re.findall(r"(--?[a-z][a-z-]*)|([A-Z][A-Z0-9_]*)|(.)", usage):
        if opt:
            out.append("\\fB" + esc(opt) + "\\fR")
        elif meta:
            out.append("\\fI" + meta + "\\fR")
        else:
            out.append(esc(other))
    return "".join(out)


def changelog_date():
    with open("packaging/debian/changelog") as f:
        for line in f:
            if line.startswith(" -- "):
                stamp = line.split(">", 1)[1].strip()
                return email.utils.parsedate_to_datetime(stamp).strftime("%Y-%m-%d")
    raise SystemExit("packaging/debian/changelog has no trailer line")


def acl_lines():
    text = open("docs/install.md").read()
    block = re.search(r"<!-- acl-setup:.*?-->\s*```sh\n(.*?)```", text, re.S)
    if block is None:
        raise SystemExit("docs/install.md: the acl-setup block is missing")
    return block.group(1).strip().splitlines()


def example(lines):
    return [".PP", ".EX"] + [esc(line) if line else "" for line in lines] + [".EE"]


version = run("--version").splitlines()[0].split()[1]
date = changelog_date()
source = "custodian " + version

# --- custodian(8) ---
commands = [row.split("\t") for row in run("help", "--reference").splitlines()[1:]]
man8 = [
    '.\\" Generated from the command table (agent/commands.c) by scripts/gen-man.py;',
    '.\\" do not edit by hand (a test checks that this page and the table agree).',
    f'.TH CUSTODIAN 8 "{date}" "{source}" "System Administration"',
    ".nh",
    ".ad l",
    ".SH NAME",
    "custodian \\- continuous, encrypted, audited backup agent",
    ".SH SYNOPSIS",
    ".B custodian",
    "[\\fB\\-c\\fR \\fICONFIG\\fR] [\\fB\\-\\-json\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
    ".br",
    ".B custodian \\-\\-version",
    ".br",
    ".B custodian \\-\\-help",
    ".SH DESCRIPTION",
    "custodian watches the image, invoice and bug-report folders of the Billing",
    "Automation host with inotify and, within seconds of a file being written,",
    "puts an encrypted, compressed, verified copy of it in every configured",
    "destination (a mounted disk, S3-compatible storage, SFTP), recorded in a",
    "SQLite catalog that answers audit questions for the seven years the",
    "retention plan requires.",
    "A daily run adds a MongoDB dump, a restore point and signed manifests.",
    ".PP",
    "\\fBcustodian agent\\fR is the service (systemd runs it as the",
    "\\fIcustodian\\fR user); the same program is the operator's tool for",
    "status, restores and audits.",
    "Backups are encrypted to the operator's public key: the host holds no key",
    "that decrypts them.",
    ".SH OPTIONS",
    ".TP",
    "\\fB\\-c\\fR \\fICONFIG\\fR",
    "The configuration file; else \\fB$CUSTODIAN_CONFIG\\fR, else",
    "\\fI/etc/custodian/custodian.conf\\fR.",
    ".TP",
    ".B \\-\\-json",
    "Reporting commands print one JSON document on standard output.",
    "Also accepted after the command's name.",
    ".TP",
    ".B \\-\\-version",
    "The version, and the catalog schema version this build reads and writes.",
    ".TP",
    ".B \\-\\-help",
    "The commands, with their arguments.",
    ".SH COMMANDS",
]
for name, usage, help_text in commands:
    man8 += [".TP", f"\\fBcustodian {esc(name)}\\fR" + (f" {synopsis(usage)}" if usage else ""),
             esc(help_text[:1].upper() + help_text[1:]) + ("" if help_text.endswith(".") else ".")]
man8 += [
    ".PP",
    "\\fITIME\\fR is RFC 3339 (\\fB2026\\-11\\-20T14:00:00\\-05:00\\fR) or a date",
    "(\\fB2026\\-11\\-20\\fR: the end of that day in the configured time zone).",
    "\\fIDEST\\fR is the name of a \\fB[destination\\fR \\fINAME\\fR\\fB]\\fR section.",
    "Paths are shown with non-printable bytes and invalid UTF-8 escaped as",
    "\\fB\\e\\fR\\fIxNN\\fR (and a backslash as \\fB\\e\\e\\fR); that form is accepted back.",
    ".SH EXIT STATUS",
    ".TP",
    ".B 0",
    "Success; for \\fBstatus\\fR, protection is whole.",
    ".TP",
    ".B 1",
    "The operation failed; standard error says what and what to do.",
    "For \\fBstatus\\fR: something is not protected.",
    ".TP",
    ".B 2",
    "Usage or configuration error, naming the file, line and key.",
    "The unit does not restart the agent after it (\\fBRestartPreventExitStatus=2\\fR).",
    ".SH ENVIRONMENT",
    ".TP",
    ".B CUSTODIAN_CONFIG",
    "The configuration file when \\fB\\-c\\fR is not given.",
    ".TP",
    '.BR NOTIFY_SOCKET ", " WATCHDOG_USEC',
    "Set by systemd for the service: the agent sends \\fBREADY=1\\fR after the",
    "start-up reconciliation, \\fBSTATUS=\\fR with the unshipped files and the",
    "oldest one's age, \\fBWATCHDOG=1\\fR from its event loop every quarter of",
    "\\fBWatchdogSec=\\fR, and \\fBSTOPPING=1\\fR on SIGTERM.",
    ".TP",
    ".B CUSTODIAN_TEST_STALL_MS",
    "For the tests only: blocks the agent's event loop once, for that many",
    "milliseconds, to show that the watchdog pings stop. Never set it for the",
    "service.",
    ".SH FILES",
    ".TP",
    ".I /etc/custodian/custodian.conf",
    "The configuration (root:custodian, 0640), see \\fBcustodian.conf\\fR(5).",
    "The service does not start until it exists.",
    ".TP",
    ".I /etc/custodian/custodian.conf.example",
    "The example configuration (a conffile).",
    ".TP",
    ".I /etc/custodian/keys/",
    "\\fBbackup.pub\\fR (root, 0644) and the agent's secret keys \\fBnaming.key\\fR and",
    "\\fBsigning.key\\fR (custodian, 0600), made by \\fBcustodian keygen\\fR.",
    "\\fBbackup.key\\fR, which decrypts the backups, belongs off this host.",
    "\\fBrecovery-sheet.txt\\fR (root, 0600), every key with a checksum and the commands",
    "that rebuild the key files, is to be printed for a safe and then deleted.",
    ".TP",
    ".I /var/lib/custodian/",
    "The state folder (custodian, 0700): \\fBcatalog.db\\fR (SQLite), \\fBspool/\\fR",
    "(encrypted objects waiting for their copies), \\fBagent.lock\\fR.",
    ".TP",
    ".I /lib/systemd/system/custodian.service",
    "The unit; change it with a drop-in (\\fBsystemctl edit custodian\\fR), examples in",
    "\\fI/usr/share/doc/custodian/examples/\\fR.",
    ".SH ACCESS",
    "The agent reads the data folders without owning them: ACLs give the",
    "\\fIcustodian\\fR user read access to \\fI/app/data\\fR, to what is created",
    "there later, and nothing more:",
] + example(acl_lines()) + [
    ".PP",
    "A file created with an explicit mode of 0600 gets an ACL mask that hides",
    "it from the agent; see \\fI/usr/share/doc/custodian/install.md\\fR.",
    ".SH EXAMPLES",
    "Set up, check and start the service:",
] + example([
    "custodian keygen --out /etc/custodian/keys",
    "install -m 0640 -g custodian /etc/custodian/custodian.conf.example \\",
    "    /etc/custodian/custodian.conf",
    "runuser -u custodian -- custodian init",
    "runuser -u custodian -- custodian doctor",
    "systemctl start custodian",
    "custodian status",
]) + [
    ".PP",
    "Bring back a deleted invoice as it was at the end of a day:",
] + example([
    "custodian catalog history /app/data/invoices/INV-7.pdf",
    "custodian restore file /app/data/invoices/INV-7.pdf --at 2026-11-20 --to /tmp/r",
]) + [
    ".PP",
    "Restore the database dump of a day into MongoDB:",
] + example([
    "custodian restore db 2026-11-20 --stdout | mongorestore --archive --drop",
]) + [
    ".PP",
    "Answer an auditor:",
] + example([
    "custodian catalog ls /app/data/invoices --at 2026-06-30",
    "custodian audit log --since 2026-11-01",
    "custodian audit verify",
]) + [
    ".SH SEE ALSO",
    ".BR custodian.conf (5),",
    ".BR systemd.exec (5),",
    ".BR systemd.service (5),",
    ".BR setfacl (1),",
    ".BR sqlite3 (1),",
    ".BR mongorestore (1)",
    ".PP",
    "\\fI/usr/share/doc/custodian/\\fR: README.md, install.md, operations.md,",
    "restore.md, destinations.md, configuration.md, FORMAT.md.",
]

# --- custodian.conf(5) ---
keys = [row.split("\t") for row in run("config", "reference").splitlines()[1:]]
man5 = [
    '.\\" Generated from the key table (agent/config.c) by scripts/gen-man.py;',
    '.\\" do not edit by hand (a test checks that this page and the table agree).',
    f'.TH CUSTODIAN.CONF 5 "{date}" "{source}" "File Formats"',
    ".nh",
    ".ad l",
    ".SH NAME",
    "custodian.conf \\- configuration of the custodian backup agent",
    ".SH SYNOPSIS",
    ".I /etc/custodian/custodian.conf",
    ".SH DESCRIPTION",
    "The file is INI: \\fB[\\fR\\fIsection\\fR\\fB]\\fR headers, \\fIkey\\fR \\fB=\\fR \\fIvalue\\fR",
    "lines; comments start with \\fB;\\fR or \\fB#\\fR (also after a value, following",
    "a blank). Relative paths are resolved against the folder holding the file.",
    "Every error names the file, the line and the key, and exits with status 2.",
    "Unknown sections and keys are errors.",
    "Secrets are read only from files (mode 0600), never from the command line",
    "or the environment.",
    ".PP",
    "The service reads the file as the \\fIcustodian\\fR user: make it",
    "root:custodian, mode 0640.",
    "\\fBcustodian config reference\\fR prints the same table as this page.",
]
section = None
for sec, key, typ, default, help_text in keys:
    if sec != section:
        section = sec
        title = sec.replace(" NAME", " \\fINAME\\fP")
        man5 += [f'.SH "[{title}]"' if sec == "destination NAME" else f".SH [{sec}]"]
        if sec == "destination NAME":
            man5 += ["One section per destination; \\fINAME\\fR is what \\fB\\-\\-from\\fR and",
                     "\\fBcustodian status\\fR call it. Every object goes to every destination."]
    kind = esc(typ.replace("|", " or "))
    man5 += [".TP", f"\\fB{esc(key)}\\fR = \\fI{kind}\\fR",
             esc(help_text),
             ".br",
             {"(required)": "Required.", "(none)": "Default: none."}.get(
                 default, "Default: " + esc(default.replace("|", " or ")) + ".")]
man5 += [".SH EXAMPLE"] + example(
    open("packaging/custodian.conf.example").read().rstrip("\n").splitlines()) + [
    ".SH FILES",
    ".TP",
    ".I /etc/custodian/custodian.conf",
    "The configuration the service reads.",
    ".TP",
    ".I /etc/custodian/custodian.conf.example",
    "The example above.",
    ".SH SEE ALSO",
    ".BR custodian (8)",
]

os.makedirs(outdir, exist_ok=True)
for name, lines in (("custodian.8", man8), ("custodian.conf.5", man5)):
    with open(os.path.join(outdir, name), "w") as f:
        f.write("\n".join(lines) + "\n")
