"""``python -m imagegate``: the same as the ``imagegate`` command."""

from imagegate.shell.cli.main import main

main()
