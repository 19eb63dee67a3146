"""kube-service-mirror's command-line spellings, rewritten into this CLI's before parsing.

Go's flag package takes `-name v`, `-name=v` and `--name=v`, and booleans as
`-svc-sync=false`; existing Deployments and CronJobs pass them that way, so they must
keep working unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


Flags = dict[str, tuple[str, str | None]]  # boolean option -> its on and off spellings


def _option_names(template: Callable[..., object]) -> tuple[set[str], Flags]:
    """Long option names of template's parameters, and the on/off spellings of the boolean ones."""
    names: set[str] = set()
    flags: Flags = {}
    for param in inspect.signature(template).parameters.values():
        name = param.name.replace("_", "-")
        names.add(name)
        if param.default is True:
            flags[name] = (f"--{name}", f"--no-{name}")
            names.add(f"no-{name}")
        elif param.default is False:
            flags[name] = (f"--{name}", None)
    return names, flags


def go_style(argv: list[str], template: Callable[..., object]) -> list[str]:
    """Rewrites the Go spellings of template's options, in option position only.

    `-name v` and `-name=v` become `--name v`; `-svc-sync=false` becomes `--no-svc-sync`;
    arguments without a command run `loop`, as the Go program ran until stopped. The value
    of an option (`--kube-context -dry-run`) and anything after `--` stay as they are.
    """
    names, flags = _option_names(template)
    valued = {n for n in names if n not in flags and n.removeprefix("no-") not in flags}
    out: list[str] = []
    value_next = False  # the previous argument was an option that takes a value
    for index, arg in enumerate(argv):
        if value_next or arg == "--":
            value_next = False
            if arg == "--":
                out.extend(argv[index:])
                break
            out.append(arg)
            continue
        single_dash = arg.startswith("-") and not arg.startswith("--") and len(arg) > 2
        if single_dash and arg[1:].split("=", 1)[0] in names:
            arg = "-" + arg
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            if name in flags:
                on, off = flags[name]
                if value in GO_TRUE:
                    arg = on
                elif value in GO_FALSE:
                    if off is None:
                        continue
                    arg = off
        else:
            value_next = arg.startswith("--") and arg[2:] in valued
        out.append(arg)
    if out and out[0].startswith("-") and out[0] not in ("-h", "--help", "--version"):
        out.insert(0, "loop")
    return out
