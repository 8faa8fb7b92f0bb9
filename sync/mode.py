"""The online/offline switch lives with the box's system settings
(:mod:`appliance.system.mode`); replication reads and sets it through this name."""

from appliance.system.mode import MODE_KEY, ModeChange, effective_mode, set_mode, stored_mode

__all__ = ["MODE_KEY", "ModeChange", "effective_mode", "set_mode", "stored_mode"]
