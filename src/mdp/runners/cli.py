"""The original command line, ``python -m mdp.runners.cli run --spec FILE`` and ``mdp-legacy run --spec FILE``.

It is ``mdp`` with the old spelling translated: ``run --spec FILE`` runs the job file's classic pipeline, as
``mdp run --config FILE --mode classic`` does (which a note on stderr says to use); every other command and
option goes to ``mdp`` as it is.
"""

from __future__ import annotations

import sys

from mdp import entry


def translate(argv: list[str]) -> list[str]:
    """The ``mdp`` arguments for the original command line ``argv`` (without the program name)."""
    if not argv or argv[0] != "run" or not any(a == "--spec" or a.startswith("--spec=") for a in argv):
        return list(argv)
    out = ["run"]
    for arg in argv[1:]:
        if arg == "--spec":
            out.append("--config")
        elif arg.startswith("--spec="):
            out.append("--config=" + arg.removeprefix("--spec="))
        else:
            out.append(arg)
    if not any(a == "--mode" or a.startswith("--mode=") for a in out):
        out += ["--mode", "classic"]
    return out


def main(argv: list[str] | None = None) -> None:
    """Translate, say what the modern command is, and hand over to ``mdp``."""
    given = sys.argv[1:] if argv is None else argv
    args = translate(given)
    if args != given:
        print(
            "note: the original runner's 'run --spec' is mdp's 'mdp " + " ".join(args) + "'; use that from now on",
            file=sys.stderr,
        )
    sys.argv = ["mdp", *args]
    entry.main()


if __name__ == "__main__":
    main()
