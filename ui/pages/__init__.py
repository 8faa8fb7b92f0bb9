"""One module per screen; each has ``register()`` defining its page(s)."""
