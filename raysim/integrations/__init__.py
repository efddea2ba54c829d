"""Callbacks that record a framework's logged metrics as raysim's metrics lines: one for
the Hugging Face Trainer (huggingface.py), one for the Lightning Trainer (lightning.py).

`raysim launch` attaches them to the program's trainer by itself; a program may also pass
them (`callbacks=[RaysimCallback()]`), which it then gets once. Each line goes through
`ray.train.report`, which in a launched script adds raysim's measurements. The framework
is an optional extra (`pip install 'raysim[hf]'`, `'raysim[lightning]'`); logs.py, the
translation of its logs into a line, needs neither.
"""
