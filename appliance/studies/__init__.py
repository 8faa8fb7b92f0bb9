"""Studies, series and instances: the index of what the appliance holds, and their states."""
