#!/usr/bin/python3
"""Write docs/configuration.md from `custodian config reference` (the key table)."""
import subprocess
import sys

binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/custodian"
rows = subprocess.run([binary, "config", "reference"], check=True, capture_output=True,
                      text=True).stdout.splitlines()[1:]
out = ["# Configuration reference", "",
       "Generated from the key table in `agent/config.c` by `scripts/gen-config-doc.py`;",
       "do not edit by hand (a test checks that this page and the table agree).", "",
       "The file is INI: `[section]` headers, `key = value` lines, comments start with",
       "`;` or `#` (also after a value, following a blank). Relative paths are resolved",
       "against the folder holding the config file. Every error names the file, the line",
       "and the key, and exits with status 2. Unknown sections and keys are errors.",
       "Secrets are read only from files (mode 0600), never from the command line or the",
       "environment.", ""]
section = None
for row in rows:
    sec, key, typ, default, help_text = row.split("\t")
    if sec != section:
        section = sec
        out += ["", f"## [{sec}]", "", "| key | type | default | meaning |",
                "| --- | --- | --- | --- |"]
    out.append(f"| `{key}` | {typ.replace('|', ' or ')} | {default.replace('|', ' or ')} "
               f"| {help_text.replace('|', ' or ')} |")
out += ["", "## Example", "", "See `packaging/custodian.conf.example`.", ""]
open("docs/configuration.md", "w").write("\n".join(out))
