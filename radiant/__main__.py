"""``python -m radiant``: the same as the ``radiant`` console script."""

from radiant.cli import main

raise SystemExit(main())
