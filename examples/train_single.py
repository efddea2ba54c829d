"""Single-node training with a memory cap, as in the original project.

    python examples/train_single.py --num-epochs=100 --batch-size 8 --memory-fraction 0.20

Reads configs/single_node_config.yaml; flags override it (every config key is a flag).
"""

import sys
from pathlib import Path

from raysim.original_flags import example_main

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

if __name__ == "__main__":
    sys.exit(
        example_main(
            __doc__.splitlines()[0],
            default_config=str(CONFIGS / "single_node_config.yaml"),
            single_node=True,
        )
    )
