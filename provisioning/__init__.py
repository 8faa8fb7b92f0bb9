"""First boot, device identity, fleet enrollment and the Debian packages a box needs."""
