"""The ``radiant`` sub-commands, one module per group; each has ``add_commands(sub,
data_dir_option)`` and imports what a command needs inside the command, so that ``radiant
fsck`` does not load the web stack, replication or the model engines."""
