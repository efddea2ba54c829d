"""Simulated distributed training: N nodes sharing one device, as in the original project.

    python examples/train_distributed.py --num-nodes 4 --num-epochs=100 --batch-size 8 \
        --memory-fraction 0.20

Reads configs/distributed_config.yaml; flags override it (every config key is a flag).
"""

import sys
from pathlib import Path

from raysim.original_flags import example_main

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

if __name__ == "__main__":
    sys.exit(
        example_main(
            __doc__.splitlines()[0], default_config=str(CONFIGS / "distributed_config.yaml")
        )
    )
