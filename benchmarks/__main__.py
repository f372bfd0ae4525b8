"""``python -m benchmarks``: run the benchmark suite.

``--atlas-path DIR`` benchmarks the ``atlas_events`` package found in ``DIR``
instead of the installed one (e.g. an older commit extracted with
``git archive <commit> atlas_events | tar -x -C DIR``), for before/after
comparisons.
"""

import argparse
import sys

_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--atlas-path", default=None)
_known, _ = _pre.parse_known_args()
if _known.atlas_path:
    # An editable install resolves ``atlas_events`` through its own finder,
    # ahead of sys.path: drop it so the given checkout is imported.
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, _known.atlas_path)

from .run import main  # noqa: E402

raise SystemExit(main())
