"""FFP-300K construction stages (paper §3), one file each; see `base.py` for the contract."""
