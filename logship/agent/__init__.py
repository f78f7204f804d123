"""`logship agent`: ship log files to a topic without losing a line.

The agent finds files by glob (discovery.py), follows each one by its identity rather
than its name (identity.py, tailer.py), keeps track of the files it tails and of the
content streams rotation detaches from them (fileset.py, streams.py), cuts lines
(lines.py, multiline.py), builds record batches (route.py, linerecords.py, batches.py),
delivers them with acks=all through the client's Producer (shipper.py) and moves each
file's checkpoint only once the broker acknowledged its lines (checkpoint.py).
agent.py runs the loop that ties these together; status.py reads a state directory for
`--status`.
"""

from .agent import Agent
from .config import AgentConfig, InputConfig, MultilineConfig, default_state_dir, load_config
from .counters import Counters
from .status import file_status

__all__ = ["Agent", "AgentConfig", "Counters", "InputConfig", "MultilineConfig", "default_state_dir",
           "file_status", "load_config"]
