"""dualasr: one RNN-T whose encoder runs in streaming or full-context mode (Yu et al., ICLR 2021).

This module imports nothing heavy: `dualasr.runtime` (the torch-free harness) lives under the
same namespace and must stay importable without torch.
"""

__version__ = "0.1.0"
MODES = ("streaming", "full")
