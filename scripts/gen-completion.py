#!/usr/bin/python3
"""Write packaging/bash-completion/custodian from the command table.

Commands, their options and what each argument is (a folder, a file, a
destination name) come from `custodian help --reference` (agent/commands.c),
the way scripts/gen-config-doc.py writes docs/configuration.md from the key
table. Destination names are read from the config in use when completing.
Do not edit the output by hand: a test regenerates it and compares.

usage: scripts/gen-completion.py [BINARY [OUTFILE]]
"""
import re
import subprocess
import sys

binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/custodian"
outfile = sys.argv[2] if len(sys.argv) > 2 else "packaging/bash-completion/custodian"

# What a placeholder in a usage string completes to.
ACTIONS = {
    "DIR": "_filedir -d",
    "FILE": "_filedir",
    "PATH": "_filedir",
    "PREFIX": "_filedir",
    "DEST": 'COMPREPLY=($(compgen -W "$(_custodian_destinations "$conf")" -- "$cur"))',
    "COMMAND": 'COMPREPLY=($(compgen -W "$firsts" -- "$cur"))',
}

rows = [row.split("\t") for row in subprocess.run(
    [binary, "help", "--reference"], check=True, capture_output=True,
    text=True).stdout.splitlines()[1:]]


def parse(usage):
    """Options (with the placeholder each takes, or None) and positional placeholders."""
    options, positional, last_option = {}, [], None
    for opt, meta in re.findall(r"(--?[a-z][a-z-]*)|([A-Z][A-Z0-9_-]*)", usage):
        if opt:
            options[opt] = None
            last_option = opt
        elif last_option is not None and options[last_option] is None and \
                re.search(re.escape(last_option) + r" " + re.escape(meta), usage):
            options[last_option] = meta
            last_option = None
        else:
            positional.append(meta)
            last_option = None
    return options, positional


firsts, groups, singles = [], {}, set()
for name, _, _ in rows:
    words = name.split(" ")
    if words[0] not in firsts:
        firsts.append(words[0])
    if len(words) == 2:
        groups.setdefault(words[0], []).append(words[1])
    else:
        singles.add(words[0])
# A word that is both a command and a group (`snapshot LABEL` and `snapshot list`):
# the second word is the group's only when it is one of the group's words.
both = singles & groups.keys()

out = [
    "# bash completion for custodian(8): commands, their options, destination names.",
    "# Generated from the command table (agent/commands.c) by scripts/gen-completion.py;",
    "# do not edit by hand (a test checks that it and the table agree).",
    "",
    "# The names of the [destination NAME] sections of a config.",
    "_custodian_destinations()",
    "{",
    '    [[ -r $1 ]] || return 0',
    "    sed -n 's/^[[:space:]]*\\[destination[[:space:]]\\{1,\\}\\([^][:space:]]\\{1,\\}\\)"
    "[[:space:]]*\\].*/\\1/p' \"$1\"",
    "}",
    "",
    "_custodian()",
    "{",
    "    local cur prev words cword",
    "    _init_completion || return",
    "",
    f'    local firsts="{" ".join(firsts)}"',
    '    local conf=${CUSTODIAN_CONFIG:-/etc/custodian/custodian.conf} i=1 cmd opts="" arg=""',
    "    if [[ $prev == -c ]]; then",
    "        _filedir",
    "        return",
    "    fi",
    "    # Global options come before the command.",
    "    while ((i < cword)); do",
    "        case ${words[i]} in",
    "        -c)",
    "            conf=${words[i + 1]}",
    "            conf=${conf/#\\~/$HOME}",
    "            ((i += 2))",
    "            ;;",
    "        -*) ((i++)) ;;",
    "        *) break ;;",
    "        esac",
    "    done",
    "    if ((i >= cword)); then",
    '        COMPREPLY=($(compgen -W "-c --json --version --help $firsts" -- "$cur"))',
    "        return",
    "    fi",
    "    cmd=${words[i]}",
    "    case $cmd in",
]
for group, seconds in groups.items():
    if group in both:
        out += [
            f"    {group})",
            "        if ((i + 1 == cword)) && [[ $cur != -* ]]; then",
            f'            COMPREPLY=($(compgen -W "{" ".join(seconds)}" -- "$cur"))',
            "            return",
            "        fi",
            "        case ${words[i + 1]} in",
            f'        {"|".join(seconds)}) cmd="$cmd ${{words[i + 1]}}" ;;',
            "        esac",
            "        ;;",
        ]
        continue
    out += [
        f"    {group})",
        "        if ((i + 1 == cword)); then",
        f'            COMPREPLY=($(compgen -W "{" ".join(seconds)}" -- "$cur"))',
        "            return",
        "        fi",
        '        cmd="$cmd ${words[i + 1]}"',
        "        ;;",
    ]
out += ["    esac", "", "    case $cmd in"]
for name, usage, _ in rows:
    options, positional = parse(usage)
    out.append(f'    "{name}")')
    valued = [(o, m) for o, m in options.items() if m]
    if valued:
        out.append("        case $prev in")
        for opt, meta in valued:
            action = ACTIONS.get(meta)
            out.append(f"        {opt})" + (f" {action}; return ;;" if action else " return ;;"))
        out.append("        esac")
    if options:
        out.append(f'        opts="{" ".join(options)}"')
    if positional and positional[0] in ACTIONS:
        out.append(f"        arg={positional[0]}")
    out.append("        ;;")
out += [
    "    *) return ;;",
    "    esac",
    "    if [[ $cur == -* ]]; then",
    '        COMPREPLY=($(compgen -W "$opts --json" -- "$cur"))',
    "        return",
    "    fi",
    "    case $arg in",
]
for meta, action in ACTIONS.items():
    out.append(f"    {meta}) {action} ;;")
out += [
    "    esac",
    "} &&",
    "    complete -F _custodian custodian",
]
with open(outfile, "w") as f:
    f.write("\n".join(out) + "\n")
