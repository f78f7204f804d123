"""`logship produce` and `logship consume` against kcat, side by side, into one `logship serve`.

    python bench/client.py [--records 1000000] [--size 200] [--rounds 3] [-b BROKERS]

The same as `logship bench` (logship/cli/bench.py, where the method is described), run
from a source checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logship.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
