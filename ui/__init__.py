"""NiceGUI touch screens. They call appliance services directly, never raw SQL."""
