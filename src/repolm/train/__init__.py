"""The pretraining stage: packed training windows, the optimizer and its schedule, and the training loop.

Submodules are imported where used (`repolm.train.data`, `repolm.train.optim`, ...), so importing this package
pulls in nothing heavy.
"""
