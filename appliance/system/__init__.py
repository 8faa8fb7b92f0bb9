"""The appliance as a whole: health."""
