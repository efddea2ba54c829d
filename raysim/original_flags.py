"""The original project's command lines (examples/launcher.py, train_single.py,
train_distributed.py): their flags, on top of a shipped YAML config, through the same run
as `raysim run`."""

from __future__ import annotations

from collections.abc import Sequence

from raysim.cli import FlagParser, add_config_flags, guarded, run_command


def example_main(
    description: str,
    default_config: str,
    argv: Sequence[str] | None = None,
    mode_configs: dict[str, str] | None = None,
    single_node: bool = False,
) -> int:
    """The original project's scripts: the same flags, on top of a shipped YAML config.

    With mode_configs, --mode picks the YAML (launcher.py --mode single|distributed);
    single mode (or single_node) always means one node.
    """
    parser = FlagParser(description=description)
    if mode_configs:
        parser.add_argument("--mode", choices=sorted(mode_configs), required=True)
    parser.add_argument("--config", default=None, help=f"YAML config (default {default_config})")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    add_config_flags(parser)
    args = parser.parse_args(argv)
    mode = getattr(args, "mode", None)
    if args.config is None:
        args.config = mode_configs[mode] if mode_configs else default_config
    if single_node or mode == "single":
        args.num_nodes = 1
    args.inject = args.resume = args.train_fn = None
    return guarded(run_command, args)
