"""What a data-parallel step costs on a real cluster: links, collectives, the overlapped step.

Pure cost models, no Ray and no run directory: the table of links (line rate and achieved
bandwidth), the emulation's alpha-beta all-reduce and DDP's bucket layout, NCCL's
all-reduce cost, the overlapped step and a model's FLOP-based readiness. The emulation's
comm hook, `raysim project` and `compare/sweep --target` share them.
"""
