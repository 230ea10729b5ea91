"""Shared test configuration: never touch the network, keep torch small and deterministic."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
