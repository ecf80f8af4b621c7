"""Shared pytest setup: the repository root on sys.path (pages and tests import
``lrp_engine`` and each other from there), and a fixed, small torch thread count."""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)
