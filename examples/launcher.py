"""The original project's launcher: single-node or simulated distributed training.

    python examples/launcher.py --mode single
    python examples/launcher.py --mode distributed --num-epochs 100 --num-nodes 4 --batch-size 8

--mode single reads configs/single_node_config.yaml (always one node);
--mode distributed reads configs/distributed_config.yaml. Every raysim config
key is also a flag (--memory-fraction, --image-size, --run-name, ...).
"""

import sys
from pathlib import Path

from raysim.original_flags import example_main

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

if __name__ == "__main__":
    sys.exit(
        example_main(
            __doc__.splitlines()[0],
            default_config=str(CONFIGS / "distributed_config.yaml"),
            mode_configs={
                "single": str(CONFIGS / "single_node_config.yaml"),
                "distributed": str(CONFIGS / "distributed_config.yaml"),
            },
        )
    )
