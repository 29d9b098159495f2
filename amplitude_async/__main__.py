"""``python -m amplitude_async``: the ``amplitude-async`` command line."""

from amplitude_async.cli import main

raise SystemExit(main())
